//! A figure from repeated runs: the median, with the smallest and the
//! largest beside it, so that a reader sees the spread and not only the
//! middle.

/// The median of some runs, and their range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many runs it is made of.
    pub runs: usize,
}

impl Figure {
    /// The figure of `values`, leaving out the ones that are not numbers
    /// (a run that reported nothing); none when no run did. An even count
    /// takes the mean of the middle two.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Figure> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n % 2 {
            1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some(Figure {
            median,
            min: v[0],
            max: v[n - 1],
            runs: n,
        })
    }

    /// As JSON: `{"median", "min", "max", "runs"}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "runs": self.runs,
        })
    }
}

/// `value` with a suffix and three significant figures, as a table
/// shows rates: `1.23M`, `456k`, `7.89k`, `812`.
pub fn compact(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    let digits = match scaled.abs() {
        v if v >= 100.0 || suffix.is_empty() => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    format!("{scaled:.digits$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_and_max() {
        let f = Figure::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((f.median, f.min, f.max, f.runs), (2.0, 1.0, 3.0, 3));
        let even = Figure::of([4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((even.median, even.min, even.max), (2.5, 1.0, 4.0));
        let one = Figure::of([7.0]).unwrap();
        assert_eq!((one.median, one.min, one.max), (7.0, 7.0, 7.0));
    }

    #[test]
    fn runs_without_a_number_are_left_out() {
        let f = Figure::of([f64::NAN, 5.0, f64::INFINITY, 1.0]).unwrap();
        assert_eq!((f.median, f.runs), (3.0, 2));
        assert_eq!(Figure::of([f64::NAN]), None);
        assert_eq!(Figure::of(Vec::new()), None);
    }

    #[test]
    fn compact_numbers_keep_three_figures() {
        assert_eq!(compact(1_234_567.0), "1.23M");
        assert_eq!(compact(456_789.0), "457k");
        assert_eq!(compact(45_678.0), "45.7k");
        assert_eq!(compact(7_890.0), "7.89k");
        assert_eq!(compact(812.4), "812");
        assert_eq!(compact(3.7), "4");
    }
}
