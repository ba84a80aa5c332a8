//! Runnable examples of Tenure; see the `[[example]]` entries of this package.
