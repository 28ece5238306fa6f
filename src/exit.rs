//! Exit codes from DESIGN.md ("Interfaces") and the error type that carries one.
//!
//! Commands return `anyhow::Result<Exit>`; an error that should end with something other than 1
//! wraps a [`Coded`] so that `cli::main` can pick the code in one place.

use std::fmt;

/// The process exit codes of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Everything done (including "nothing to do").
    Ok = 0,
    /// An error.
    Error = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// A sink failed; work is pending and will be retried.
    Partial = 3,
    /// A bundle was rejected (signature, sequence, checksum, limits).
    Rejected = 4,
    /// A bundle is held by the sanity gate until approved.
    Held = 5,
    /// Another run holds the lock.
    Locked = 75,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The more severe of two outcomes, for commands that process several items.
    /// Errors outrank partial success; among the bundle verdicts, rejected outranks held.
    pub fn worst(self, other: Exit) -> Exit {
        fn rank(e: Exit) -> u8 {
            match e {
                Exit::Ok => 0,
                Exit::Partial => 1,
                Exit::Held => 2,
                Exit::Rejected => 3,
                Exit::Usage => 4,
                Exit::Locked => 5,
                Exit::Error => 6,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// An error that ends the process with a specific exit code.
#[derive(Debug)]
pub struct Coded {
    pub exit: Exit,
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// Build an `anyhow::Error` that exits with `exit`.
pub fn coded(exit: Exit, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        exit,
        message: message.into(),
    })
}

/// Shorthand for a usage or configuration error (exit 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    coded(Exit::Usage, message)
}

/// The exit code an error should produce: the first [`Coded`] in its chain, else 1.
pub fn exit_for(err: &anyhow::Error) -> Exit {
    err.chain()
        .find_map(|e| e.downcast_ref::<Coded>().map(|c| c.exit))
        .unwrap_or(Exit::Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coded_error_survives_context() {
        let e = usage("bad key").context("reading config/watch.yaml");
        assert_eq!(exit_for(&e), Exit::Usage);
        assert_eq!(exit_for(&anyhow::anyhow!("plain")), Exit::Error);
    }

    #[test]
    fn worst_prefers_errors_then_rejections() {
        assert_eq!(Exit::Ok.worst(Exit::Partial), Exit::Partial);
        assert_eq!(Exit::Held.worst(Exit::Rejected), Exit::Rejected);
        assert_eq!(Exit::Rejected.worst(Exit::Held), Exit::Rejected);
        assert_eq!(Exit::Partial.worst(Exit::Error), Exit::Error);
    }
}
