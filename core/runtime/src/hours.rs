//! Business hours per department, in the department's own time zone.
//!
//! Written the way people say them: `"mon-fri 09:00-17:30"`,
//! `"sat,sun 10:00-14:00"`, `"daily 08:00-20:00"`; a window that ends before
//! it starts runs past midnight (`"fri 22:00-02:00"`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// When a department answers. Empty: always.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hours(pub Vec<Window>);

/// One weekly window, in minutes after midnight of each listed day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    pub days: [bool; 7],
    pub start: u32,
    pub end: u32,
    source: String,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(name: &str) -> Option<usize> {
    let name = name.trim().to_lowercase();
    DAYS.iter()
        .position(|d| name.starts_with(d) && name.len() <= 9)
}

fn clock(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

impl Window {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "business hours `{text}`: write days and times like \"mon-fri 09:00-17:30\" or \"daily 08:00-20:00\""
            )
        };
        let (days_part, times) = text.trim().rsplit_once(' ').ok_or_else(bad)?;
        let mut days = [false; 7];
        for part in days_part.split(',') {
            let part = part.trim().to_lowercase();
            if part == "daily" || part == "every day" {
                days = [true; 7];
            } else if let Some((a, b)) = part.split_once('-') {
                let (a, b) = (day(a).ok_or_else(bad)?, day(b).ok_or_else(bad)?);
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            } else {
                days[day(&part).ok_or_else(bad)?] = true;
            }
        }
        let (start, end) = times.split_once('-').ok_or_else(bad)?;
        let (start, end) = (clock(start).ok_or_else(bad)?, clock(end).ok_or_else(bad)?);
        if start == end {
            return Err(format!("business hours `{text}`: the window is empty"));
        }
        Ok(Self {
            days,
            start,
            end,
            source: text.trim().to_owned(),
        })
    }

    /// Whether `weekday` (Monday 0) at `minute` after midnight falls inside.
    fn contains(&self, weekday: usize, minute: u32) -> bool {
        if self.start < self.end {
            self.days[weekday] && (self.start..self.end).contains(&minute)
        } else {
            // Past midnight: the evening part today, the morning part belongs to yesterday.
            let yesterday = (weekday + 6) % 7;
            (self.days[weekday] && minute >= self.start)
                || (self.days[yesterday] && minute < self.end)
        }
    }
}

/// The IANA time zone with this name.
pub fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name).map_err(|_| {
        format!("unknown time zone `{name}`: use an IANA name such as \"Europe/Berlin\"")
    })
}

impl Hours {
    /// Whether the department is open at `now_ms` in time zone `tz`.
    pub fn is_open(&self, tz: &str, now_ms: i64) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Ok(zone) = time_zone(tz) else {
            return true;
        };
        let Ok(instant) = jiff::Timestamp::from_millisecond(now_ms) else {
            return true;
        };
        let local = instant.to_zoned(zone);
        let weekday = local.weekday().to_monday_zero_offset() as usize;
        let minute = local.hour() as u32 * 60 + local.minute() as u32;
        self.0.iter().any(|w| w.contains(weekday, minute))
    }
}

impl Serialize for Hours {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|w| w.source.as_str()))
    }
}

impl<'de> Deserialize<'de> for Hours {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        raw.iter()
            .map(|t| Window::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map(Hours)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(list: &[&str]) -> Hours {
        Hours(list.iter().map(|t| Window::parse(t).unwrap()).collect())
    }

    /// 2026-11-20 is a Friday.
    fn at(rfc3339: &str) -> i64 {
        rfc3339.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn office_hours_in_the_department_time_zone() {
        let h = hours(&["mon-fri 09:00-17:00"]);
        // 08:30 UTC is 09:30 in Berlin (CET, UTC+1) but 03:30 in New York.
        assert!(h.is_open("Europe/Berlin", at("2026-11-20T08:30:00Z")));
        assert!(!h.is_open("America/New_York", at("2026-11-20T08:30:00Z")));
        // Saturday.
        assert!(!h.is_open("Europe/Berlin", at("2026-11-21T10:00:00Z")));
        assert!(hours(&[]).is_open("Europe/Berlin", at("2026-11-21T03:00:00Z")));
    }

    #[test]
    fn windows_past_midnight_and_lists_of_days() {
        let h = hours(&["fri 22:00-02:00", "sat,sun 10:00-12:00"]);
        assert!(h.is_open("UTC", at("2026-11-20T23:00:00Z")));
        assert!(h.is_open("UTC", at("2026-11-21T01:59:00Z")));
        assert!(!h.is_open("UTC", at("2026-11-21T02:00:00Z")));
        assert!(h.is_open("UTC", at("2026-11-22T11:00:00Z")));
        let wrap = hours(&["sat-mon 10:00-11:00"]);
        assert!(wrap.is_open("UTC", at("2026-11-23T10:30:00Z")));
        assert!(!wrap.is_open("UTC", at("2026-11-24T10:30:00Z")));
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "someday 09:00-17:00",
            "mon 9-5",
            "mon 25:00-26:00",
            "mon 09:00-09:00",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
        assert!(time_zone("Europe/Berlin").is_ok());
        assert!(time_zone("Mars/Olympus").is_err());
    }
}
