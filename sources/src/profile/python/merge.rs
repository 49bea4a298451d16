//! Python frames among native ones: each native frame of the C eval loop
//! (`_PyEval_EvalFrameDefault`, its `.cold` part included) stands for the
//! Python frames that call of the loop ran, and is replaced by them.
//!
//! Up to 3.10 one eval call runs one Python frame. From 3.11 a Python call
//! from Python stays in the same eval call, so one native eval frame holds
//! several Python frames: the program marks the outermost frame of each
//! eval call (`PYTHON_EVAL_END`), which splits the Python stack into one
//! group per eval call, leaf first, matched in order with the native eval
//! frames, leaf first.
//!
//! Groups left over (the native walk stopped before reaching their eval
//! frames: code without frame pointers) go to the root end of the stack,
//! after the native frames and the `[unknown]` gap that ends them: the
//! Python frames are complete either way, only their native callers are
//! missing.

use std::sync::Arc;

use sonde_core::event::{Frame, FrameKind};

/// The native function that runs Python frames.
pub const EVAL_FUNCTION: &str = "_PyEval_EvalFrameDefault";

/// Whether native frame `frame` is a call of the eval loop.
pub fn is_eval_frame(frame: &Frame) -> bool {
    frame.kind == FrameKind::Native && frame.function.starts_with(EVAL_FUNCTION)
}

/// `native` (leaf first) with its eval frames replaced by the Python
/// frames of `python` (leaf first, each with whether it ends an eval call).
pub fn merge(native: &[Frame], python: &[(Frame, bool)]) -> Arc<[Frame]> {
    let mut groups = python
        .split_inclusive(|(_, end)| *end)
        .filter(|g| !g.is_empty())
        .peekable();
    let mut out = Vec::with_capacity(native.len() + python.len());
    for frame in native {
        if is_eval_frame(frame) {
            if let Some(group) = groups.next() {
                out.extend(group.iter().map(|(f, _)| f.clone()));
                continue;
            }
        }
        out.push(frame.clone());
    }
    for group in groups {
        out.extend(group.iter().map(|(f, _)| f.clone()));
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_core::event::SharedStr;

    fn frame(name: &str, kind: FrameKind) -> Frame {
        Frame {
            function: SharedStr::from(name.to_string()),
            module: None,
            file: None,
            line: None,
            address: 0,
            kind,
        }
    }

    fn names(frames: &[Frame]) -> Vec<&str> {
        frames.iter().map(|f| f.function.as_str()).collect()
    }

    #[test]
    fn eval_frames_give_way_to_their_python_frames_in_order() {
        let n = |name| frame(name, FrameKind::Native);
        let p = |name, end| (frame(name, FrameKind::Python), end);
        // 3.11+: fib, fib, key in the inner eval call (under sorted),
        // main, <module> in the outer one.
        let python = [
            p("fib", false),
            p("fib", false),
            p("key", true),
            p("main", false),
            p("<module>", true),
        ];
        let native = [
            n("PyLong_Add"),
            n("_PyEval_EvalFrameDefault"),
            n("sorted"),
            n("_PyEval_EvalFrameDefault.cold"),
            n("Py_RunMain"),
            n("main"),
        ];
        let merged = merge(&native, &python);
        assert_eq!(
            names(&merged),
            [
                "PyLong_Add",
                "fib",
                "fib",
                "key",
                "sorted",
                "main",
                "<module>",
                "Py_RunMain",
                "main"
            ]
        );
        // The native walk stopped early: the rest goes after the gap.
        let short = [
            n("PyLong_Add"),
            n("_PyEval_EvalFrameDefault"),
            frame("[unknown]", FrameKind::Unknown),
        ];
        let merged = merge(&short, &python);
        assert_eq!(
            names(&merged),
            ["PyLong_Add", "fib", "fib", "key", "[unknown]", "main", "<module>"]
        );
        // No Python frames: unchanged.
        assert_eq!(names(&merge(&native, &[])), names(&native));
    }
}
