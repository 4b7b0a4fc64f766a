//! A state dir's trials in other tools' formats: [`tensorboard`] (`coordinator export
//! tensorboard`).

pub mod tensorboard;
