//! The MusicGPT model and the rules of this receiver, pure: parsing callbacks, planning their
//! writes, naming keys and ids, status words. No I/O, no AWS, HTTP or Lambda types.

pub mod answer;
pub mod api;
pub mod asset;
pub mod by_user;
pub mod callback;
pub mod conversion;
pub mod events;
pub mod ids;
pub mod keys;
pub mod listing;
pub mod media;
pub mod outputs;
pub mod plan;
pub mod quarantine;
pub mod requests;
pub mod retry;
pub mod status;
pub mod token;
