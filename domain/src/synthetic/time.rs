//! Civil dates and instants without a date-time crate.
//!
//! The generator only needs "days since the epoch" arithmetic and ISO 8601 formatting; Howard
//! Hinnant's `days_from_civil` algorithm does both exactly for the proleptic Gregorian calendar.

use std::fmt;

/// A calendar date (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalendarDate {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl CalendarDate {
    pub const fn new(year: i32, month: u32, day: u32) -> Self {
        Self { year, month, day }
    }

    /// Days since 1970-01-01.
    pub fn to_days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    pub fn from_days(days: i64) -> Self {
        let z = days + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Self { year, month, day }
    }
}

impl fmt::Display for CalendarDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

pub const SECONDS_PER_DAY: i64 = 86_400;

/// An instant, as seconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Moment(pub i64);

impl Moment {
    pub fn at(date: CalendarDate, hour: i64, minute: i64) -> Self {
        Self(date.to_days() * SECONDS_PER_DAY + hour * 3600 + minute * 60)
    }

    pub fn date(self) -> CalendarDate {
        CalendarDate::from_days(self.0.div_euclid(SECONDS_PER_DAY))
    }

    pub fn plus_minutes(self, minutes: i64) -> Self {
        Self(self.0 + minutes * 60)
    }

    pub fn plus_days(self, days: i64) -> Self {
        Self(self.0 + days * SECONDS_PER_DAY)
    }

    /// FHIR `dateTime`/`instant` in UTC, e.g. `2024-03-05T14:30:00Z`.
    pub fn iso(self) -> String {
        let secs = self.0.rem_euclid(SECONDS_PER_DAY);
        format!(
            "{}T{:02}:{:02}:{:02}Z",
            self.date(),
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        )
    }

    /// FHIR `date`, e.g. `2024-03-05`.
    pub fn day_string(self) -> String {
        self.date().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_across_leap_years() {
        for days in -800_000..-799_000 {
            assert_eq!(CalendarDate::from_days(days).to_days(), days);
        }
        for days in 0..40_000 {
            assert_eq!(CalendarDate::from_days(days).to_days(), days);
        }
        assert_eq!(
            CalendarDate::new(2024, 2, 29).to_days() + 1,
            CalendarDate::new(2024, 3, 1).to_days()
        );
    }

    #[test]
    fn formats_iso_8601() {
        let m = Moment::at(CalendarDate::new(2024, 3, 5), 14, 30);
        assert_eq!(m.iso(), "2024-03-05T14:30:00Z");
        assert_eq!(m.day_string(), "2024-03-05");
        assert_eq!(Moment(0).iso(), "1970-01-01T00:00:00Z");
    }
}
