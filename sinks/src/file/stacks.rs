//! Profiles as Brendan Gregg's folded stacks (`root;…;leaf count`, the
//! input of flamegraph.pl and inferno) and as flame graph SVGs.
//!
//! Each stack starts with the process name, so one flame graph shows every
//! process side by side. Kernel frames get the `_[k]` suffix and JIT frames
//! `_[j]`, the annotations flame graph palettes colour by; frames that
//! could not be named fold into their module (`[libfoo.so]`) so a stripped
//! library is one box, not one per address.

use std::collections::BTreeMap;

use inferno::flamegraph::color::{MultiPalette, Palette};
use sonde_core::event::{Frame, FrameKind, Profile, Timestamp};

/// Folded lines of `profiles`, identical stacks summed, sorted.
pub fn folded<'a>(profiles: impl IntoIterator<Item = &'a Profile>) -> Vec<String> {
    let mut stacks: BTreeMap<String, u64> = BTreeMap::new();
    for profile in profiles {
        let process = profile
            .attributes
            .get(sonde_core::event::keys::COMM)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "[unknown]".to_string());
        for sample in &profile.samples {
            let mut line = clean(&process);
            for frame in sample.frames.iter().rev() {
                line.push(';');
                line.push_str(&frame_name(frame));
            }
            *stacks.entry(line).or_default() += sample.count;
        }
    }
    stacks.into_iter().map(|(stack, n)| format!("{stack} {n}")).collect()
}

/// The folded text: one line per stack, newline-terminated.
pub fn folded_text<'a>(profiles: impl IntoIterator<Item = &'a Profile>) -> String {
    let mut text = String::new();
    for line in folded(profiles) {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

fn frame_name(frame: &Frame) -> String {
    match frame.kind {
        FrameKind::Kernel => format!("{}_[k]", clean(&frame.function)),
        FrameKind::Jit => format!("{}_[j]", clean(&frame.function)),
        FrameKind::Unknown => match &frame.module {
            Some(module) => format!("[{}]", clean(module.rsplit('/').next().unwrap_or(module))),
            None => clean(&frame.function),
        },
        FrameKind::Native | FrameKind::Python => clean(&frame.function),
    }
}

/// A frame name with the characters that delimit folded stacks replaced.
fn clean(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            ';' => ':',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect()
}

/// A flame graph SVG of `profiles` over `start`..`end`.
pub fn flamegraph<'a>(
    profiles: impl IntoIterator<Item = &'a Profile>,
    start: Timestamp,
    end: Timestamp,
) -> std::io::Result<Vec<u8>> {
    let lines = folded(profiles);
    let mut options = inferno::flamegraph::Options::default();
    options.title = "CPU profile".to_string();
    options.subtitle = Some(format!("{start} to {end}"));
    options.count_name = "samples".to_string();
    // Colours kernel (_[k]) and JIT (_[j]) frames apart from native ones.
    options.colors = Palette::Multi(MultiPalette::Java);
    let mut svg = Vec::new();
    if lines.is_empty() {
        // inferno refuses an empty input; an empty interval is still a file.
        options.subtitle = Some(format!("{start} to {end}: no samples"));
        inferno::flamegraph::from_lines(&mut options, ["[no samples] 1"], &mut svg)?;
    } else {
        inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)?;
    }
    Ok(svg)
}

/// A flame graph SVG of `profiles` over the time they cover (the agent
/// API's `/flamegraph/ID`).
pub fn flamegraph_of(profiles: &[&Profile]) -> std::io::Result<Vec<u8>> {
    let start = profiles.iter().map(|p| p.start).min().unwrap_or_default();
    let end = profiles.iter().map(|p| p.end).max().unwrap_or_default();
    flamegraph(profiles.iter().copied(), start, end)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sonde_core::event::{keys, Attributes, StackSample};

    use super::*;

    fn frame(name: &str, kind: FrameKind, module: Option<&str>) -> Frame {
        Frame {
            function: name.to_string().into(),
            module: module.map(|m| m.to_string().into()),
            file: None,
            line: None,
            address: 1,
            kind,
        }
    }

    fn profile() -> Profile {
        let frames: Arc<[Frame]> = vec![
            frame("do_syscall_64", FrameKind::Kernel, Some("[kernel]")),
            frame("0x1234", FrameKind::Unknown, Some("/usr/lib/libz.so.1")),
            frame("a;b", FrameKind::Native, Some("/bin/app")),
            frame("main", FrameKind::Native, Some("/bin/app")),
        ]
        .into();
        Profile {
            sample_type: "cpu".into(),
            sample_unit: "nanoseconds".into(),
            period: 1,
            start: Timestamp::from_nanos(0),
            end: Timestamp::from_nanos(1),
            samples: vec![
                StackSample {
                    frames: Arc::clone(&frames),
                    count: 3,
                },
                StackSample { frames, count: 2 },
            ],
            attributes: Attributes::new().with(keys::COMM, "app"),
        }
    }

    #[test]
    fn stacks_fold_root_first_and_sum() {
        let lines = folded([&profile()]);
        assert_eq!(lines, ["app;main;a:b;[libz.so.1];do_syscall_64_[k] 5"]);
    }

    #[test]
    fn flamegraph_is_svg_naming_frames() {
        let svg =
            String::from_utf8(flamegraph([&profile()], Timestamp::from_nanos(0), Timestamp::from_nanos(1)).unwrap())
                .unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        // Each frame's box, with its samples (all 5 pass through each).
        for title in [
            "all (5 samples, 100%)",
            "app (5 samples, 100.00%)",
            "main (5 samples, 100.00%)",
            "a:b (5 samples, 100.00%)",
            "[libz.so.1] (5 samples, 100.00%)",
            // inferno colours by the `_[k]` suffix and shows the name without it.
            "do_syscall_64 (5 samples, 100.00%)",
        ] {
            assert!(
                svg.contains(&format!("<title>{title}</title>")),
                "no box {title:?}:\n{svg}"
            );
        }
        let empty = flamegraph([], Timestamp::from_nanos(0), Timestamp::from_nanos(1)).unwrap();
        assert!(String::from_utf8(empty).unwrap().contains("no samples"));
    }
}
