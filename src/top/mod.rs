//! `sonde top`: a terminal view of a running agent, refreshed every
//! interval: per component events in and out a second, drops by reason,
//! errors, buffer fill, and what eBPF sources lost in the kernel; per
//! eBPF program of the agent runs a second and nanoseconds a run (program
//! statistics on only while top runs, see [`bpf`]); per hash map its fill.
//!
//! It reads the agent API's `/stats`, whose counters cost the agent
//! nothing more to keep; rates are taken here, between two polls.

mod bpf;
mod model;
mod view;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::ExecutableCommand;

use crate::client::ApiClient;
use bpf::{MapRow, ProgramRow, Programs, StatsEnabled};
use model::{Row, Sample, SortBy};

/// What is on screen.
pub struct Screen {
    address: String,
    pid: u32,
    uptime: f64,
    rows: Vec<Row>,
    programs: Vec<ProgramRow>,
    maps: Vec<MapRow>,
    sort: SortBy,
    reverse: bool,
    filter: String,
    editing: bool,
    error: Option<String>,
    bpf_note: Option<String>,
}

/// Puts the terminal back however top ends (a panic included).
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> std::io::Result<Self> {
        terminal::enable_raw_mode()?;
        std::io::stdout().execute(EnterAlternateScreen)?;
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = std::io::stdout().execute(LeaveAlternateScreen);
            let _ = terminal::disable_raw_mode();
            hook(info);
        }));
        Ok(TerminalGuard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = std::io::stdout().execute(LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

/// Runs top until `q`.
pub fn run(client: ApiClient, interval: Duration) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Fails early, before the screen is taken, when no agent is there.
    let first: model::Stats = runtime.block_on(client.get_json("/stats"))?;
    let stats_on = StatsEnabled::enable();
    let mut programs = Programs::default();
    let mut screen = Screen {
        address: client.address().to_string(),
        pid: first.pid,
        uptime: first.uptime_seconds,
        rows: Vec::new(),
        programs: Vec::new(),
        maps: Vec::new(),
        sort: SortBy::Pipeline,
        reverse: false,
        filter: String::new(),
        editing: false,
        error: None,
        bpf_note: stats_on.unavailable.clone(),
    };
    let mut previous: Option<Sample> = None;
    let mut current = Sample {
        at: Instant::now(),
        stats: first,
    };
    let _guard = TerminalGuard::enter()?;
    let mut terminal = ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))?;
    let mut next_poll = Instant::now();
    let mut first_round = true;
    loop {
        if Instant::now() >= next_poll {
            // The first round shows the poll made above.
            if !std::mem::take(&mut first_round) {
                match runtime.block_on(client.get_json::<model::Stats>("/stats")) {
                    Ok(stats) => {
                        let sample = Sample {
                            at: Instant::now(),
                            stats,
                        };
                        previous = Some(std::mem::replace(&mut current, sample));
                        screen.error = None;
                    }
                    Err(error) => screen.error = Some(error.to_string()),
                }
            }
            screen.pid = current.stats.pid;
            screen.uptime = current.stats.uptime_seconds;
            match programs.poll(current.stats.pid, &model::program_owners(&current.stats)) {
                Ok((p, m)) => {
                    screen.programs = p;
                    screen.maps = m;
                }
                Err(note) => screen.bpf_note = Some(note),
            }
            next_poll += interval;
        }
        let rows = model::rows(&current, previous.as_ref());
        screen.rows = model::arrange(rows, screen.sort, screen.reverse, &screen.filter);
        if screen.filter.is_empty() {
            screen.programs.sort_by(|a, b| a.name.cmp(&b.name));
        } else {
            screen
                .programs
                .retain(|p| p.name.contains(&screen.filter) || p.component.contains(&screen.filter));
        }
        terminal.draw(|frame| view::draw(frame, &screen))?;
        let wait = next_poll.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            if let Event::Key(key) = event::read()? {
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                if screen.editing {
                    match key.code {
                        KeyCode::Enter => screen.editing = false,
                        KeyCode::Esc => {
                            screen.editing = false;
                            screen.filter.clear();
                        }
                        KeyCode::Backspace => {
                            screen.filter.pop();
                        }
                        KeyCode::Char(c) => screen.filter.push(c),
                        _ => {}
                    }
                    continue;
                }
                match key.code {
                    KeyCode::Char('q') => break,
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => break,
                    KeyCode::Char('s') => screen.sort = screen.sort.next(),
                    KeyCode::Char('r') => screen.reverse = !screen.reverse,
                    KeyCode::Char('/') => screen.editing = true,
                    KeyCode::Esc => screen.filter.clear(),
                    _ => {}
                }
            }
        }
    }
    drop(terminal);
    // Program statistics go back off here (the descriptor closes).
    drop(stats_on);
    Ok(ExitCode::SUCCESS)
}
