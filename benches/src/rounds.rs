//! What the side-by-side comparisons (`compare`, `stream-compare`) share about their rounds: the order in which
//! systems run in each round, and the median a table reports over them.

/// `items` rotated left by `round`, so that no item always runs first or last.
pub fn rotated<T: Clone>(items: &[T], round: usize) -> Vec<T> {
    let mut order = items.to_vec();
    let turn = round % order.len().max(1);
    order.rotate_left(turn);
    order
}

/// The median of `values` (the mean of the middle two for an even count); NaN when there are none.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}
