//! libtorch reports errors inside a model's forward pass (a shape that does not fit, out of
//! memory) as Rust panics, since tch's infallible tensor methods unwrap. The engine turns them into
//! errors: [`quietly`] catches the panic and returns its message, and, on that thread only, keeps
//! the default hook from printing it with a backtrace in front of the user.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `body`; a panic becomes `Err` with its message (one line).
pub fn quietly<T>(body: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    let was = QUIET.with(|q| q.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(body));
    QUIET.with(|q| q.set(was));
    result.map_err(|payload| message(payload.as_ref()))
}

/// The useful line of a panic payload: for libtorch errors, the error text without the C++
/// backtrace and the `called Result::unwrap()` wrapper.
fn message(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        return "panicked".into();
    };
    let text = text.replace("\\n", "\n");
    let text = match text.find("Torch(\"") {
        Some(start) => &text[start + 7..],
        None => text.as_str(),
    };
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("panicked");
    first.trim_end_matches(['"', ')']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_libtorch_error_becomes_its_first_line() {
        let result = quietly(|| {
            let a = tch::Tensor::zeros([2, 3], (tch::Kind::Float, tch::Device::Cpu));
            let b = tch::Tensor::zeros([4, 5], (tch::Kind::Float, tch::Device::Cpu));
            a.matmul(&b)
        });
        let message = result.err().unwrap();
        assert!(message.contains("cannot be multiplied") || message.contains("shapes"), "{message}");
        assert!(!message.contains('\n') && !message.contains("Exception raised"), "{message}");
        assert_eq!(quietly(|| 5), Ok(5));
    }
}
