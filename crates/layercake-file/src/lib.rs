//! Durable local-directory tier for layercake: one atomic envelope file per entry.
