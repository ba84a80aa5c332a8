//! What every subcommand shares: global options and how a URL becomes a connection.

pub mod connect;
pub mod options;
