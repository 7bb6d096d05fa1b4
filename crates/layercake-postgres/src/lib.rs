//! PostgreSQL tier (L3) and LISTEN/NOTIFY backplane for layercake.
