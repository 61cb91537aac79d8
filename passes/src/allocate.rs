//! Budget allocation over independent items (sites, tables), each taking
//! one of its alternatives, every alternative with a cost (params, bytes)
//! and a predicted error; errors are taken to add up across items.
//!
//! At a price `λ` per unit of cost each item takes the alternative
//! minimising `error + λ·cost` (the Lagrangian relaxation of the
//! multiple-choice knapsack): every such pick is on the lower convex hull
//! of total cost against total error. [`within_cost`] searches `λ` for the
//! cheapest hull point within a budget, then spends what the hull step left
//! on the upgrades that buy the most error per unit of cost.

/// One way to treat an item.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Alternative {
    pub cost: f64,
    pub error: f64,
}

/// A point of the cost/error trade-off: per item the alternative taken.
#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    pub picks: Vec<usize>,
    pub cost: f64,
    pub error: f64,
}

/// The range of `log10 λ` searched.
const PRICES: (f64, f64) = (-40.0, 40.0);

fn allocation(items: &[Vec<Alternative>], picks: Vec<usize>) -> Allocation {
    let (cost, error) = items
        .iter()
        .zip(&picks)
        .fold((0.0, 0.0), |(c, e), (alts, &p)| {
            (c + alts[p].cost, e + alts[p].error)
        });
    Allocation { picks, cost, error }
}

/// Each item's alternative minimising `error + price·cost` (the cheaper on
/// ties). Items must have at least one alternative.
pub fn at_price(items: &[Vec<Alternative>], price: f64) -> Allocation {
    let picks = items
        .iter()
        .map(|alts| {
            let score = |a: &Alternative| a.error + price * a.cost;
            (0..alts.len())
                .min_by(|&x, &y| {
                    score(&alts[x])
                        .total_cmp(&score(&alts[y]))
                        .then(alts[x].cost.total_cmp(&alts[y].cost))
                })
                .expect("an item has alternatives")
        })
        .collect();
    allocation(items, picks)
}

/// The least-error allocation found whose total cost is at most `budget`,
/// or `None` when even the cheapest alternatives cost more.
pub fn within_cost(items: &[Vec<Alternative>], budget: f64) -> Option<Allocation> {
    if at_price(items, 10f64.powf(PRICES.1)).cost > budget {
        let cheapest: Vec<usize> = items
            .iter()
            .map(|alts| {
                (0..alts.len())
                    .min_by(|&x, &y| alts[x].cost.total_cmp(&alts[y].cost))
                    .expect("an item has alternatives")
            })
            .collect();
        let cheapest = allocation(items, cheapest);
        return (cheapest.cost <= budget).then(|| spend(items, cheapest, budget));
    }
    let price = boundary(items, |a| a.cost <= budget, true);
    Some(spend(items, at_price(items, price), budget))
}

/// The cheapest allocation found whose total error is at most `max_error`
/// (the least-error one when none is).
pub fn within_error(items: &[Vec<Alternative>], max_error: f64) -> Allocation {
    at_price(items, boundary(items, |a| a.error <= max_error, false))
}

/// The price where the allocations stop meeting `ok`, on the side that
/// meets it: `ok` holds at high prices (`ok_when_high`: costs fall as
/// the price rises) or at low ones (errors rise with it).
fn boundary(
    items: &[Vec<Alternative>],
    ok: impl Fn(&Allocation) -> bool,
    ok_when_high: bool,
) -> f64 {
    let (mut lo, mut hi) = PRICES;
    for _ in 0..80 {
        let mid = (lo + hi) / 2.0;
        if ok(&at_price(items, 10f64.powf(mid))) == ok_when_high {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    10f64.powf(if ok_when_high { hi } else { lo })
}

/// Upgrades within `budget`: repeatedly the switch of one item to a
/// lower-error alternative that fits and saves the most error per unit of
/// cost added.
fn spend(items: &[Vec<Alternative>], mut at: Allocation, budget: f64) -> Allocation {
    loop {
        let left = budget - at.cost;
        let best = items
            .iter()
            .enumerate()
            .flat_map(|(i, alts)| {
                let now = alts[at.picks[i]];
                alts.iter().enumerate().filter_map(move |(j, a)| {
                    let (added, saved) = (a.cost - now.cost, now.error - a.error);
                    (saved > 0.0 && added <= left).then_some((i, j, saved / added.max(1e-300)))
                })
            })
            .max_by(|x, y| x.2.total_cmp(&y.2));
        match best {
            Some((i, j, _)) => {
                at.picks[i] = j;
                at = allocation(items, at.picks);
            }
            None => return at,
        }
    }
}

/// The distinct hull points met sweeping `λ` over `steps` prices, cheapest
/// first.
pub fn frontier(items: &[Vec<Alternative>], steps: usize) -> Vec<Allocation> {
    let (lo, hi) = PRICES;
    let mut points: Vec<Allocation> = (0..=steps)
        .map(|s| at_price(items, 10f64.powf(lo + (hi - lo) * s as f64 / steps as f64)))
        .collect();
    points.sort_by(|a, b| a.cost.total_cmp(&b.cost).then(a.error.total_cmp(&b.error)));
    points.dedup_by(|a, b| a.picks == b.picks);
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alt(cost: f64, error: f64) -> Alternative {
        Alternative { cost, error }
    }

    fn items() -> Vec<Vec<Alternative>> {
        vec![
            vec![alt(4.0, 0.0), alt(1.0, 0.5), alt(2.0, 0.1)],
            vec![alt(4.0, 0.0), alt(1.0, 0.01), alt(2.0, 0.005)],
            vec![alt(4.0, 0.0), alt(1.0, 2.0), alt(2.0, 0.2)],
        ]
    }

    /// Every pick, for checking against brute force.
    fn all_picks(items: &[Vec<Alternative>]) -> Vec<Allocation> {
        let mut out = vec![Vec::new()];
        for alts in items {
            out = out
                .into_iter()
                .flat_map(|p: Vec<usize>| {
                    (0..alts.len()).map(move |j| {
                        let mut p = p.clone();
                        p.push(j);
                        p
                    })
                })
                .collect();
        }
        out.into_iter().map(|p| allocation(items, p)).collect()
    }

    #[test]
    fn within_cost_meets_the_budget_and_matches_brute_force_here() {
        let items = items();
        for budget in [3.0, 4.0, 5.0, 6.0, 8.0, 12.0] {
            let got = within_cost(&items, budget).unwrap();
            assert!(got.cost <= budget);
            let best = all_picks(&items)
                .into_iter()
                .filter(|a| a.cost <= budget)
                .map(|a| a.error)
                .fold(f64::INFINITY, f64::min);
            assert!(
                (got.error - best).abs() < 1e-12,
                "budget {budget}: {got:?} vs {best}"
            );
        }
        assert!(within_cost(&items, 2.0).is_none());
    }

    #[test]
    fn within_error_is_the_cheapest_hull_point_under_the_error() {
        let items = items();
        let got = within_error(&items, 0.4);
        assert!(got.error <= 0.4);
        assert_eq!(got.cost, 5.0);
        assert_eq!(within_error(&items, 0.0).error, 0.0);
    }

    #[test]
    fn the_frontier_runs_from_cheapest_to_exact() {
        let points = frontier(&items(), 200);
        assert_eq!(points.first().unwrap().cost, 3.0);
        assert_eq!(points.last().unwrap().error, 0.0);
        for pair in points.windows(2) {
            assert!(pair[0].cost <= pair[1].cost && pair[0].error >= pair[1].error);
        }
    }
}
