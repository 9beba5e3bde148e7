//! The use cases, written against the ports in [`ports`]: they know neither AWS nor HTTP nor
//! Lambda, only what the domain says and what the ports answer.

pub mod announce;
pub mod by_user;
pub mod copy;
pub mod measure;
pub mod operate;
pub mod pace;
pub mod ports;
pub mod read;
pub mod reconcile;
pub mod record;
pub mod submit;
pub mod sweep;
pub mod verify;
