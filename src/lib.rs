//! MusicGPT webhook receiver: records callbacks in DynamoDB and copies their files into S3.
//!
//! Layers, inner to outer: [`domain`] (pure model and rules), [`app`] (use cases against the
//! ports in `app::ports`), [`adapters`] (the ports implemented), [`lambda`] (front ends), and
//! [`wiring`], which builds them for `src/bin/`. Dependencies point inward only
//! (`tests/layers.rs` keeps it so).

pub mod adapters;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod lambda;
pub mod wiring;

pub use error::{Error, Result};
