//! MusicGPT webhook receiver.
