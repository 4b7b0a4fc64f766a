//! A state dir's trials in other tools' formats: [`tensorboard`] (`coordinator export
//! tensorboard`, and `--tensorboard DIR` while a sweep runs).

pub mod tensorboard;
