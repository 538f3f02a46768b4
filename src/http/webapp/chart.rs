//! Small charts drawn on the server as inline SVG (no script, no CDN): a person's balance over
//! the last 30 days and a merchant's daily payment volume. The markup holds only numbers and
//! strings this module formats itself, so it is embedded in the page unescaped.

use super::money;
use chrono::{DateTime, Days, NaiveDate, Utc};

/// How many days a chart covers, today included.
pub const CHART_DAYS: u64 = 30;
/// Most entries read to draw one chart.
pub const CHART_ENTRIES_MAX: u64 = 5_000;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
const PAD_LEFT: f64 = 8.0;
const PAD_RIGHT: f64 = 8.0;
const PAD_TOP: f64 = 12.0;
const PAD_BOTTOM: f64 = 4.0;

/// A chart ready for a page: a heading, the SVG, and a sentence saying what it shows (also the
/// SVG's accessible name).
pub struct Chart {
    pub heading: String,
    pub svg: String,
    pub summary: String,
    /// The first and last day under the chart (in HTML, so the SVG can stretch to any width
    /// without stretching text).
    pub first_day: String,
    pub last_day: String,
}

/// The first day a chart covers.
pub fn first_day(now: DateTime<Utc>) -> NaiveDate {
    now.date_naive() - Days::new(CHART_DAYS - 1)
}

/// Midnight UTC of `first_day(now)`: entries from then on are drawn.
pub fn window_start(now: DateTime<Utc>) -> DateTime<Utc> {
    first_day(now)
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
}

/// The balance at the end of each day of the window, from the balance now and the
/// `(time, amount, balance_after)` of the window's entries, oldest first.
pub fn daily_balances(
    now: DateTime<Utc>,
    balance_now: i64,
    entries: &[(DateTime<Utc>, i64, i64)],
) -> Vec<i64> {
    let first = first_day(now);
    // Before the first entry of the window the balance was what it left behind.
    let mut running = match entries.first() {
        Some((_, amount, after)) => after - amount,
        None => balance_now,
    };
    let mut next = entries.iter().peekable();
    (0..CHART_DAYS)
        .map(|offset| {
            let day = first + Days::new(offset);
            while let Some((at, _, after)) = next.peek() {
                if at.date_naive() > day {
                    break;
                }
                running = *after;
                next.next();
            }
            running
        })
        .collect()
}

/// Per day of the window, the sum of the amounts of `entries` (time, amount) on that day.
pub fn daily_totals(now: DateTime<Utc>, entries: &[(DateTime<Utc>, i64)]) -> Vec<i64> {
    let first = first_day(now);
    let mut totals = vec![0_i64; CHART_DAYS as usize];
    for (at, amount) in entries {
        let offset = (at.date_naive() - first).num_days();
        if let Some(total) = usize::try_from(offset)
            .ok()
            .and_then(|offset| totals.get_mut(offset))
        {
            *total = total.saturating_add(*amount);
        }
    }
    totals
}

fn x_at(index: usize, count: usize) -> f64 {
    let span = WIDTH - PAD_LEFT - PAD_RIGHT;
    PAD_LEFT + span * index as f64 / (count.max(2) - 1) as f64
}

fn y_at(value: i64, low: i64, high: i64) -> f64 {
    let span = (high - low).max(1) as f64;
    let plot = HEIGHT - PAD_TOP - PAD_BOTTOM;
    PAD_TOP + plot * (1.0 - (value - low) as f64 / span)
}

fn frame(heading: String, summary: String, now: DateTime<Utc>, body: &str) -> Chart {
    let baseline = HEIGHT - PAD_BOTTOM;
    let svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{summary}\" \
         preserveAspectRatio=\"none\" xmlns=\"http://www.w3.org/2000/svg\">\
         <line x1=\"{PAD_LEFT}\" y1=\"{baseline}\" x2=\"{right}\" y2=\"{baseline}\" stroke=\"#8a94a0\" \
         stroke-width=\"1\" vector-effect=\"non-scaling-stroke\"/>{body}</svg>",
        right = WIDTH - PAD_RIGHT,
    );
    Chart {
        heading,
        svg,
        summary,
        first_day: first_day(now).format("%-d %b").to_string(),
        last_day: now.date_naive().format("%-d %b").to_string(),
    }
}

/// A line of the balance at the end of each day.
pub fn balance_chart(now: DateTime<Utc>, balances: &[i64], currency: &str) -> Chart {
    let low = balances.iter().copied().min().unwrap_or(0).min(0);
    let high = balances.iter().copied().max().unwrap_or(0).max(1);
    let points: Vec<String> = balances
        .iter()
        .enumerate()
        .map(|(index, value)| {
            format!(
                "{:.1},{:.1}",
                x_at(index, balances.len()),
                y_at(*value, low, high)
            )
        })
        .collect();
    let first = balances.first().copied().unwrap_or(0);
    let last = balances.last().copied().unwrap_or(0);
    let summary = format!(
        "Available balance at the end of each of the last {CHART_DAYS} days: {} on the first, \
         {} today, {} at the highest.",
        money(first, currency),
        money(last, currency),
        money(balances.iter().copied().max().unwrap_or(0), currency)
    );
    let area = format!(
        "<polygon points=\"{:.1},{baseline:.1} {} {:.1},{baseline:.1}\" fill=\"#e8edf7\"/>",
        x_at(0, balances.len()),
        points.join(" "),
        x_at(balances.len().saturating_sub(1), balances.len()),
        baseline = y_at(low, low, high),
    );
    let line = format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#14213d\" stroke-width=\"2.5\" \
         stroke-linejoin=\"round\" vector-effect=\"non-scaling-stroke\"/>",
        points.join(" ")
    );
    frame(
        format!("Balance, last {CHART_DAYS} days"),
        summary,
        now,
        &format!("{area}{line}"),
    )
}

/// A bar per day of the money received.
pub fn volume_chart(now: DateTime<Utc>, totals: &[i64], currency: &str) -> Chart {
    let high = totals.iter().copied().max().unwrap_or(0).max(1);
    let slot = (WIDTH - PAD_LEFT - PAD_RIGHT) / totals.len().max(1) as f64;
    let bars: String = totals
        .iter()
        .enumerate()
        .filter(|(_, total)| **total > 0)
        .map(|(index, total)| {
            let top = y_at(*total, 0, high);
            format!(
                "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#14213d\"/>",
                PAD_LEFT + slot * index as f64 + slot * 0.15,
                slot * 0.7,
                (HEIGHT - PAD_BOTTOM - top).max(1.0),
            )
        })
        .collect();
    let sum: i64 = totals.iter().copied().fold(0, i64::saturating_add);
    let busiest = totals.iter().copied().max().unwrap_or(0);
    let summary = format!(
        "Payments received per day over the last {CHART_DAYS} days: {} in all, {} on the busiest day.",
        money(sum, currency),
        money(busiest, currency)
    );
    frame(
        format!("Daily volume, last {CHART_DAYS} days"),
        summary,
        now,
        &bars,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn the_balance_at_each_days_end() {
        let now = at(30, 12);
        // 100 arrived on the 10th, 30 left on the 20th (twice that day, 10 and 20).
        let entries = [
            (at(10, 9), 100, 100),
            (at(20, 9), -10, 90),
            (at(20, 18), -20, 70),
        ];
        let balances = daily_balances(now, 70, &entries);
        assert_eq!(balances.len(), CHART_DAYS as usize);
        // The window starts on 1 November.
        assert_eq!(balances[0], 0);
        assert_eq!(balances[8], 0);
        assert_eq!(balances[9], 100);
        assert_eq!(balances[18], 100);
        assert_eq!(balances[19], 70);
        assert_eq!(balances[29], 70);
        // No movement in the window: a flat line at today's balance.
        assert_eq!(daily_balances(now, 55, &[]), vec![55; CHART_DAYS as usize]);
    }

    #[test]
    fn volume_per_day_ignores_days_outside_the_window() {
        let now = at(30, 12);
        let totals = daily_totals(now, &[(at(30, 1), 500), (at(30, 2), 250), (at(1, 0), 7)]);
        assert_eq!(totals[29], 750);
        assert_eq!(totals[0], 7);
        assert_eq!(totals.iter().sum::<i64>(), 757);
        let chart = volume_chart(now, &totals, "usd");
        assert_eq!(chart.svg.matches("<rect").count(), 2);
        assert!(chart.summary.contains("$7.57 in all"), "{}", chart.summary);
    }
}
