//! Partitions of an FFN's hidden neurons into experts of equal size (the
//! first `width % experts` one neuron larger): balanced k-means on a
//! feature vector per neuron (MoEfication), or a seeded random split.

use crate::util::rng::Rng;

/// Expert sizes for `width` neurons in `experts` parts.
pub fn sizes(width: usize, experts: usize) -> Vec<usize> {
    (0..experts)
        .map(|e| width / experts + usize::from(e < width % experts))
        .collect()
}

/// The neurons of each expert, sorted.
pub fn groups(assignment: &[usize], experts: usize) -> Vec<Vec<usize>> {
    let mut groups = vec![Vec::new(); experts];
    for (neuron, &e) in assignment.iter().enumerate() {
        groups[e].push(neuron);
    }
    groups
}

/// A random balanced assignment of `width` neurons.
pub fn random(width: usize, experts: usize, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..width).collect();
    rng.shuffle(&mut order);
    let mut assignment = vec![0; width];
    let mut at = 0;
    for (e, size) in sizes(width, experts).into_iter().enumerate() {
        for &n in &order[at..at + size] {
            assignment[n] = e;
        }
        at += size;
    }
    assignment
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Balanced k-means: centroids seeded k-means++ style, then rounds of
/// capacity-bound assignment (the closest neuron–centroid pairs first,
/// each expert taking its size) and centroid updates.
pub fn balanced_kmeans(
    features: &[Vec<f64>],
    experts: usize,
    rounds: usize,
    rng: &mut Rng,
) -> Vec<usize> {
    let width = features.len();
    if width == 0 || experts <= 1 {
        return vec![0; width];
    }
    let mut centroids: Vec<Vec<f64>> = vec![features[rng.below(width)].clone()];
    while centroids.len() < experts {
        let d: Vec<f64> = features
            .iter()
            .map(|f| {
                centroids
                    .iter()
                    .map(|c| distance(f, c))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        let total: f64 = d.iter().sum();
        let mut pick = rng.next_f64() * total;
        let mut chosen = width - 1;
        for (i, x) in d.iter().enumerate() {
            if pick < *x {
                chosen = i;
                break;
            }
            pick -= x;
        }
        centroids.push(features[chosen].clone());
    }
    let capacity = sizes(width, experts);
    let mut assignment = vec![0; width];
    for _ in 0..rounds {
        let mut pairs: Vec<(f64, usize, usize)> = features
            .iter()
            .enumerate()
            .flat_map(|(n, f)| {
                centroids
                    .iter()
                    .enumerate()
                    .map(move |(e, c)| (distance(f, c), n, e))
            })
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut left = capacity.clone();
        let mut placed = vec![false; width];
        for (_, n, e) in pairs {
            if !placed[n] && left[e] > 0 {
                placed[n] = true;
                left[e] -= 1;
                assignment[n] = e;
            }
        }
        let dims = features[0].len();
        let mut sums = vec![vec![0.0; dims]; experts];
        for (n, &e) in assignment.iter().enumerate() {
            for (s, x) in sums[e].iter_mut().zip(&features[n]) {
                *s += x;
            }
        }
        for (c, (sum, size)) in centroids.iter_mut().zip(sums.into_iter().zip(&capacity)) {
            *c = sum.into_iter().map(|s| s / (*size).max(1) as f64).collect();
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_are_found_and_balanced() {
        let mut rng = Rng::new(1);
        // Two clear clusters of 4 points each.
        let features: Vec<Vec<f64>> = (0..8)
            .map(|i| vec![if i % 2 == 0 { 10.0 } else { -10.0 }, i as f64 * 0.01])
            .collect();
        let a = balanced_kmeans(&features, 2, 5, &mut rng);
        for i in 0..8 {
            assert_eq!(a[i] == a[0], i % 2 == 0);
        }
        let r = random(10, 3, &mut rng);
        let g = groups(&r, 3);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 3, 3]);
    }
}
