//! A state dir's trials in other tools' formats: [`tensorboard`].

pub mod tensorboard;
