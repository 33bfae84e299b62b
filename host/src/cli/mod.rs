//! The subcommands of the `sluice` binary.
