//! Redis tier (L2) and pub/sub backplane for layercake.
