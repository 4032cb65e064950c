//! Constructors for the WIT `error` variant, so business code reads `Error::rejected(..)`.

use crate::Error;

impl Error {
    /// A business rule said no. Nothing is appended and the command is not retried.
    pub fn rejected(message: impl Into<String>) -> Self {
        Error::Rejected(message.into())
    }

    /// The input could not be decoded or is not valid.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    /// An unknown command, projection, automation or entity.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }

    /// The store failed, or a stored event could not be read.
    pub fn store(message: impl Into<String>) -> Self {
        Error::Store(message.into())
    }

    /// The message, whatever the kind.
    pub fn message(&self) -> &str {
        match self {
            Error::Rejected(m)
            | Error::InvalidInput(m)
            | Error::Conflict(m)
            | Error::NotFound(m)
            | Error::Store(m) => m,
        }
    }
}
