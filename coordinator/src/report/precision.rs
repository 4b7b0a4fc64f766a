//! How many digits a figure with a 95% confidence interval deserves.
//!
//! The rule, one convention for every table of the terminal, Markdown, LaTeX and HTML reports:
//! the CI half-width is rounded to two significant digits, and the figure (and the ends of an
//! interval) to the same decimal place. This is the Guide to the Expression of Uncertainty in
//! Measurement's advice (JCGM 100:2008, §7.2.6: "it usually suffices to quote u_c(y) and U [...] to
//! at most two significant digits", the estimate rounded to be consistent with them). So
//! `4333.9928 ± 912.3` prints as `4330 ± 910`, `0.99218 ± 0.0194` as `0.992 ± 0.019`.
//!
//! Where the half-width carries no digits to go by (zero: every seed gave the same value; NaN or
//! infinite; below [`NOISE`] of the figure: the arithmetic's rounding, not a spread) the caller's
//! own fixed format is used instead, as for figures without a CI (one seed). CSV and JSON are
//! data and keep every digit.

/// A half-width at most this fraction of its figure is floating-point rounding (identical seeds
/// whose differences came out as 1e-14), not a measured spread: no place is taken from it.
pub const NOISE: f64 = 1e-9;

/// The place of `half_width` ([`Place::of`]) unless it is rounding noise beside `figures`.
fn place_beside(half_width: f64, figures: &[f64]) -> Option<Place> {
    let largest = figures.iter().filter(|v| v.is_finite()).fold(0f64, |m, v| m.max(v.abs()));
    if half_width <= largest * NOISE {
        return None;
    }
    Place::of(half_width)
}

/// The power of ten of the last digit a figure keeps: `Place(-2)` rounds to hundredths,
/// `Place(1)` to tens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place(pub i32);

impl Place {
    /// The place of the second significant digit of `half_width`, after rounding it there (so
    /// that 9.96 is 10, two digits in the tens and units: `Place(0)`). `None` for zero, negative,
    /// NaN and infinite half-widths.
    pub fn of(half_width: f64) -> Option<Place> {
        if !(half_width.is_finite() && half_width > 0.0) {
            return None;
        }
        let exponent = exponent(half_width);
        let place = Place(exponent - 1);
        // Rounding can carry into a third digit (99.7 → 100): then the tens are the second digit.
        if place.units(half_width) >= 100.0 {
            Some(Place(exponent))
        } else {
            Some(place)
        }
    }

    /// `value` in units of this place, rounded half away from zero.
    fn units(self, value: f64) -> f64 {
        if self.0 >= 0 {
            (value / 10f64.powi(self.0)).round()
        } else {
            (value * 10f64.powi(-self.0)).round()
        }
    }

    /// `value` rounded to this place (half away from zero); negative zero made positive.
    pub fn round(self, value: f64) -> f64 {
        let units = self.units(value);
        if units == 0.0 {
            return 0.0;
        }
        if self.0 >= 0 {
            units * 10f64.powi(self.0)
        } else {
            units / 10f64.powi(-self.0)
        }
    }

    fn decimals(self) -> usize {
        usize::try_from(-self.0).unwrap_or(0)
    }

    /// `value` rounded here, in decimal notation: `4330`, `0.992`.
    pub fn plain(self, value: f64) -> String {
        if !value.is_finite() {
            return format!("{value}");
        }
        format!("{:.*}", self.decimals(), self.round(value))
    }

    /// As [`Place::plain`], with a `+` before figures that are not negative (differences).
    pub fn signed(self, value: f64) -> String {
        if !value.is_finite() {
            return format!("{value:+}");
        }
        format!("{:+.*}", self.decimals(), self.round(value))
    }

    /// `value` rounded here in scientific notation, its mantissa down to this place:
    /// `1.23e-5` at `Place(-7)`.
    pub fn scientific(self, value: f64) -> String {
        self.exponential(value, false)
    }

    /// As [`Place::scientific`], with a `+` before figures that are not negative.
    pub fn signed_scientific(self, value: f64) -> String {
        self.exponential(value, true)
    }

    fn exponential(self, value: f64, signed: bool) -> String {
        let rounded = self.round(value);
        let sign = if signed && rounded >= 0.0 { "+" } else { "" };
        if !rounded.is_finite() {
            return format!("{sign}{rounded}");
        }
        if rounded == 0.0 {
            return format!("{sign}0");
        }
        let digits = usize::try_from(exponent(rounded) - self.0).unwrap_or(0);
        format!("{sign}{rounded:.digits$e}")
    }
}

/// The power of ten of `value`'s first significant digit (finite, not zero), read from Rust's
/// shortest exact rendering rather than `log10`, which can land a hair below a power of ten.
fn exponent(value: f64) -> i32 {
    let text = format!("{value:e}");
    text.rsplit_once('e').and_then(|(_, e)| e.parse().ok()).unwrap_or(0)
}

/// Whether Hessian figures (see [`super::ablation::figure`]) go in scientific notation: when
/// the largest of them lies outside [1e-3, 1e5).
pub fn scientific(values: &[f64]) -> bool {
    let largest = values.iter().filter(|v| v.is_finite()).fold(0f64, |m, v| m.max(v.abs()));
    largest != 0.0 && !(1e-3..1e5).contains(&largest)
}

/// `mean ± half-width` by the rule: `4330 ± 910`. `fallback` decimals for both where the
/// half-width gives no place (zero, NaN, infinite): today's fixed format for the column.
pub fn mean_ci(mean: f64, half_width: f64, fallback: usize) -> String {
    match place_beside(half_width, &[mean]) {
        Some(place) => format!("{} ± {}", place.plain(mean), place.plain(half_width)),
        None => format!("{mean:.fallback$} ± {half_width:.fallback$}"),
    }
}

/// A Hessian figure with its half-width by the rule, in scientific notation where
/// [`scientific`] says so (`1.23e-5 ± 4.5e-6`); `fallback` formats both where the half-width
/// gives no place.
pub fn figure_ci(mean: f64, half_width: f64, fallback: fn(f64) -> String) -> String {
    match place_beside(half_width, &[mean]) {
        Some(place) if scientific(&[mean, half_width]) => {
            format!("{} ± {}", place.scientific(mean), place.scientific(half_width))
        }
        Some(place) => format!("{} ± {}", place.plain(mean), place.plain(half_width)),
        None => format!("{} ± {}", fallback(mean), fallback(half_width)),
    }
}

/// A difference and its 95% CI, `(low, high)`, as `("+2.5", "[-3.9, +8.9]")`: signed, rounded at
/// the place of the CI's half-width; in scientific notation where `hessian` (Hessian figures) and
/// [`scientific`] say so. `None` where the interval gives no place (zero width, not finite): the
/// caller's fixed format then.
pub fn difference(mean: f64, (low, high): (f64, f64), hessian: bool) -> Option<(String, String)> {
    let place = place_beside((high - low) / 2.0, &[mean, low, high])?;
    let show = |value: f64| {
        if hessian && scientific(&[mean, low, high]) {
            place.signed_scientific(value)
        } else {
            place.signed(value)
        }
    };
    Some((show(mean), format!("[{}, {}]", show(low), show(high))))
}

/// The rule, for the notes under the tables.
pub const RULE: &str = "each CI rounded to two significant digits, its mean to the same decimal place";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_half_width_keeps_two_significant_digits_and_the_mean_its_place() {
        // (mean, half-width, fallback decimals, printed)
        let cases: [(f64, f64, usize, &str); 16] = [
            (4333.9928, 912.3, 4, "4330 ± 910"),
            (4326.3857, 2259.3188, 4, "4300 ± 2300"),
            (0.99218, 0.0194, 2, "0.992 ± 0.019"),
            (79.953, 5.93, 2, "80.0 ± 5.9"),
            (86.72, 11.81, 2, "87 ± 12"),
            (391.4, 1.23, 0, "391.4 ± 1.2"),
            (2.04, 0.4, 1, "2.04 ± 0.40"),
            // Rounding carries into a third digit: two digits again, one place up.
            (12.34, 9.96, 2, "12 ± 10"),
            (1234.5, 99.7, 2, "1230 ± 100"),
            (0.5, 0.0996, 2, "0.50 ± 0.10"),
            // Negative means, and a mean that rounds to zero (never `-0`).
            (-3.39, 9.96, 2, "-3 ± 10"),
            (-140.6794, 626.3, 4, "-140 ± 630"),
            (-0.004, 0.25, 2, "0.00 ± 0.25"),
            // No place to go by: the column's own fixed format.
            (12.0, 0.0, 1, "12.0 ± 0.0"),
            (12.0, f64::NAN, 2, "12.00 ± NaN"),
            (12.0, f64::INFINITY, 2, "12.00 ± inf"),
        ];
        for (mean, half, fallback, printed) in cases {
            assert_eq!(mean_ci(mean, half, fallback), printed, "{mean} ± {half}");
        }
        // A mean that is not a number keeps its name.
        assert_eq!(mean_ci(f64::NAN, 0.5, 2), "NaN ± 0.50");
        assert_eq!(mean_ci(f64::NEG_INFINITY, 0.5, 2), "-inf ± 0.50");
    }

    #[test]
    fn places_and_signed_figures() {
        assert_eq!(Place::of(912.3), Some(Place(1)));
        assert_eq!(Place::of(0.0194), Some(Place(-3)));
        assert_eq!(Place::of(1000.0), Some(Place(2)));
        assert_eq!(Place::of(0.001), Some(Place(-4)));
        assert_eq!(Place::of(0.0), None);
        assert_eq!(Place::of(-1.0), None);
        assert_eq!(Place::of(f64::NAN), None);
        let place = Place::of(12.63).unwrap();
        assert_eq!(
            (place.signed(6.77), place.signed(-5.86), place.signed(19.40)),
            ("+7".into(), "-6".into(), "+19".into())
        );
        assert_eq!(Place(-1).signed(-0.04), "+0.0");
        assert_eq!(Place(-1).signed(f64::NAN), "NaN");
    }

    #[test]
    fn differences_and_their_intervals_share_one_place() {
        // +6.77 in [-5.86, +19.40]: half-width 12.63, two digits are units.
        let d = |mean, low, high, hessian| difference(mean, (low, high), hessian).unwrap();
        assert_eq!(d(6.77, -5.86, 19.40, false), ("+7".to_string(), "[-6, +19]".to_string()));
        assert_eq!(d(2.5, -3.853, 8.853, false), ("+2.5".to_string(), "[-3.9, +8.9]".to_string()));
        assert_eq!(d(-1877.452, -2819.26, -935.6439, true), ("-1880".into(), "[-2820, -940]".into()));
        assert_eq!(d(7.516, -9.1148, 24.1468, true), ("+8".into(), "[-9, +24]".into()));
        assert_eq!(d(-2.0e-5, -6.5e-5, 2.5e-5, true), ("-2.0e-5".into(), "[-6.5e-5, +2.5e-5]".into()));
        assert_eq!(d(-2.0e-5, -6.5e-5, 2.5e-5, false), ("-0.000020".into(), "[-0.000065, +0.000025]".into()));
        // Every seed the same: no place, the caller's format.
        assert_eq!(difference(0.0, (0.0, 0.0), false), None);
        assert_eq!(difference(1.0, (f64::NEG_INFINITY, 2.0), false), None);
        // Identical seeds whose differences carry the arithmetic's rounding: no place either.
        assert_eq!(difference(3.000000000000005, (2.999999999999985, 3.000000000000026), false), None);
        assert_eq!(mean_ci(80.0, 1e-13, 2), "80.00 ± 0.00");
    }

    #[test]
    fn hessian_figures_go_scientific_outside_their_range() {
        let plain = |v: f64| format!("{v:.4}");
        assert_eq!(figure_ci(4333.9928, 912.3, plain), "4330 ± 910");
        assert_eq!(figure_ci(1.234e-5, 4.51e-6, plain), "1.23e-5 ± 4.5e-6");
        assert_eq!(figure_ci(2.5e6, 1.26e5, plain), "2.50e6 ± 1.3e5");
        assert_eq!(figure_ci(-2.5e6, 1.26e5, plain), "-2.50e6 ± 1.3e5");
        // Below the half-width's place the mean is zero.
        assert_eq!(figure_ci(1e-9, 4.51e-6, plain), "0 ± 4.5e-6");
        assert_eq!(figure_ci(4326.0, 0.0, plain), "4326.0000 ± 0.0000");
        assert_eq!(Place(-7).signed_scientific(4.51e-6), "+4.5e-6");
        assert_eq!(Place(-7).signed_scientific(-1e-9), "+0");
        assert!(!scientific(&[0.0, 0.0]) && scientific(&[1e-4]) && !scientific(&[1e-3, f64::NAN]));
    }
}
