//! Rise/fall debounce of a check's raw results (as keepalived's and HAProxy's `rise`/`fall`).
//!
//! A verdict flips only after `rise` passing results in a row (failing → ok) or `fall`
//! failing results in a row (ok → failing), so one lost ping neither moves the VIPs nor
//! hides a real failure for long. The first result counts at once: until a check has
//! spoken there is no verdict to protect, and a node must not wait `rise` intervals to
//! prove itself healthy at start.

/// The debounced verdict of one check. Pure: fed results, it says when the verdict changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Debounce {
    rise: u32,
    fall: u32,
    verdict: Option<bool>,
    /// Results in a row that disagree with the verdict.
    streak: u32,
}

impl Debounce {
    /// `rise` passing results flip a failing verdict, `fall` failing ones a passing verdict
    /// (0 counts as 1).
    pub const fn new(rise: u32, fall: u32) -> Self {
        Debounce { rise, fall, verdict: None, streak: 0 }
    }

    /// Takes one raw result; returns the new verdict when it changes.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        let flip = match self.verdict {
            None => true,
            Some(v) if v == ok => {
                self.streak = 0;
                false
            }
            Some(_) => {
                self.streak += 1;
                self.streak >= if ok { self.rise } else { self.fall }
            }
        };
        if !flip {
            return None;
        }
        self.verdict = Some(ok);
        self.streak = 0;
        Some(ok)
    }

    /// The current verdict (`None` until the first result).
    pub fn verdict(&self) -> Option<bool> {
        self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// The verdict changes a sequence of results produces, one entry per result.
    fn run(d: &mut Debounce, results: &[bool]) -> Vec<Option<bool>> {
        results.iter().map(|&ok| d.observe(ok)).collect()
    }

    #[test]
    fn the_first_result_counts_at_once() {
        assert_eq!(Debounce::new(3, 3).observe(false), Some(false));
        let mut d = Debounce::new(3, 3);
        assert_eq!(d.verdict(), None);
        assert_eq!(d.observe(true), Some(true));
        assert_eq!(d.verdict(), Some(true));
    }

    #[test]
    fn a_failing_check_rises_after_rise_passing_results() {
        let mut d = Debounce::new(3, 2);
        d.observe(false);
        assert_eq!(run(&mut d, &[true, true, true, true]), [None, None, Some(true), None]);
        assert_eq!(d.verdict(), Some(true));
    }

    #[test]
    fn a_passing_check_falls_after_fall_failing_results() {
        let mut d = Debounce::new(3, 2);
        d.observe(true);
        assert_eq!(run(&mut d, &[false, false, false]), [None, Some(false), None]);
        assert_eq!(d.verdict(), Some(false));
    }

    #[test]
    fn an_opposite_result_breaks_the_streak() {
        let mut d = Debounce::new(2, 2);
        d.observe(true);
        // One failure, then a pass: the failure streak starts over.
        assert_eq!(run(&mut d, &[false, true, false]), [None, None, None]);
        assert_eq!(d.verdict(), Some(true));
        assert_eq!(d.observe(false), Some(false));
        // Same on the way up.
        assert_eq!(run(&mut d, &[true, false, true]), [None, None, None]);
        assert_eq!(d.observe(true), Some(true));
    }

    #[test]
    fn rise_and_fall_of_one_follow_every_change() {
        let mut d = Debounce::new(1, 1);
        assert_eq!(run(&mut d, &[true, false, false, true]), [Some(true), Some(false), None, Some(true)]);
    }
}
