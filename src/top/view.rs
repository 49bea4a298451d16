//! Drawing `sonde top`: a header, the components table, the eBPF programs
//! and maps, and a line of keys.

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row as TableRow, Table};
use ratatui::Frame;

use super::bpf::{MapRow, ProgramRow};
use super::model::Row;
use super::Screen;

fn rate(r: Option<f64>) -> String {
    match r {
        None => "…".into(),
        Some(r) if r >= 1e6 => format!("{:.1}M", r / 1e6),
        Some(r) if r >= 1e4 => format!("{:.1}k", r / 1e3),
        Some(r) if r >= 10.0 => format!("{r:.0}"),
        Some(r) => format!("{r:.1}"),
    }
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

/// Draws one frame.
pub fn draw(frame: &mut Frame<'_>, screen: &Screen) {
    let [header, components, programs, maps, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(5),
        Constraint::Min(4),
        Constraint::Max(8),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let mut title = vec![format!(
        "sonde top — {}  pid {}  up {:.0}s  sorted by {}{}",
        screen.address,
        screen.pid,
        screen.uptime,
        screen.sort.name(),
        if screen.reverse { " (reversed)" } else { "" }
    )];
    if !screen.filter.is_empty() || screen.editing {
        title.push(format!(
            "  filter: {}{}",
            screen.filter,
            if screen.editing { "▏" } else { "" }
        ));
    }
    let status = match &screen.error {
        Some(error) => Line::styled(error.clone(), Style::default().fg(Color::Red)),
        None => Line::raw(screen.bpf_note.clone().unwrap_or_default()),
    };
    frame.render_widget(
        Paragraph::new(vec![Line::styled(title.concat(), bold()), status]),
        header,
    );

    let rows = screen.rows.iter().map(component_row);
    let table = Table::new(
        rows,
        [
            Constraint::Min(14),
            Constraint::Length(9),
            Constraint::Length(16),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(12),
            Constraint::Min(10),
            Constraint::Length(7),
            Constraint::Length(14),
            Constraint::Length(11),
        ],
    )
    .header(
        TableRow::new([
            "COMPONENT",
            "KIND",
            "TYPE",
            "IN/s",
            "OUT/s",
            "SENT",
            "DROPPED",
            "ERRORS",
            "BUFFER",
            "KERNEL LOST",
        ])
        .style(bold()),
    )
    .block(Block::bordered().title(" components "));
    frame.render_widget(table, components);

    let table = Table::new(
        screen.programs.iter().map(program_row),
        [
            Constraint::Min(16),
            Constraint::Min(14),
            Constraint::Length(16),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(14),
        ],
    )
    .header(TableRow::new(["PROGRAM", "COMPONENT", "TYPE", "RUNS/s", "NS/RUN", "CPU %", "RUNS"]).style(bold()))
    .block(Block::bordered().title(" eBPF programs "));
    frame.render_widget(table, programs);

    let table = Table::new(
        screen.maps.iter().map(map_row),
        [
            Constraint::Min(16),
            Constraint::Length(16),
            Constraint::Length(18),
            Constraint::Length(8),
        ],
    )
    .header(TableRow::new(["MAP", "TYPE", "ENTRIES", "FILL"]).style(bold()))
    .block(Block::bordered().title(" eBPF maps (hash maps counted) "));
    frame.render_widget(table, maps);

    frame.render_widget(
        Paragraph::new("q quit   s sort   r reverse   / filter   Esc clear filter"),
        keys,
    );
}

fn component_row(r: &Row) -> TableRow<'static> {
    let red = |bad: bool| {
        if bad {
            Style::default().fg(Color::Red)
        } else {
            Style::default()
        }
    };
    let dropped = if r.dropped_why.is_empty() {
        r.dropped.to_string()
    } else {
        format!("{} ({})", r.dropped, r.dropped_why)
    };
    TableRow::new(vec![
        Cell::from(r.id.clone()),
        Cell::from(r.kind.clone()),
        Cell::from(r.type_name.clone()),
        Cell::from(rate(r.in_rate)),
        Cell::from(rate(r.out_rate)),
        Cell::from(r.sent.to_string()),
        Cell::from(dropped).style(red(r.dropped > 0)),
        Cell::from(r.errors.to_string()).style(red(r.errors > 0)),
        Cell::from(match r.buffer_fill {
            Some(fill) => format!("{} {:.0}%", r.buffer, fill * 100.0),
            None => String::new(),
        })
        .style(red(r.buffer_fill.is_some_and(|f| f >= 0.9))),
        Cell::from(r.kernel_lost.to_string()).style(red(r.kernel_lost > 0)),
    ])
}

fn program_row(p: &ProgramRow) -> TableRow<'static> {
    TableRow::new(vec![
        p.name.clone(),
        p.component.clone(),
        p.kind.clone(),
        rate(p.runs_per_second),
        p.ns_per_run.map(|n| format!("{n:.0}")).unwrap_or_else(|| "…".into()),
        p.cpu.map(|c| format!("{:.2}", c * 100.0)).unwrap_or_else(|| "…".into()),
        p.runs.to_string(),
    ])
}

fn map_row(m: &MapRow) -> TableRow<'static> {
    let (entries, fill) = match m.entries {
        Some(n) => (
            format!("{n}/{}", m.max_entries),
            format!("{:.0}%", n as f64 * 100.0 / m.max_entries.max(1) as f64),
        ),
        None => (format!("-/{}", m.max_entries), String::new()),
    };
    TableRow::new(vec![m.name.clone(), m.kind.clone(), entries, fill])
}
