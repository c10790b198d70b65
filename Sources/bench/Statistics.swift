import Foundation

/// The statistics `bench` reports and `bench diff` tests with.
///
/// Ratios are paired by round: round r of allocator A and round r of the
/// baseline ran back to back (interleaved children), so a slow spell of the
/// machine lands on both. A row's per-round log ratios dᵣ = ln(aᵣ / bᵣ) are
/// summarised by their Hodges–Lehmann estimate (the median of the Walsh
/// averages (dᵢ + dⱼ) / 2, i ≤ j) with the distribution-free 95% confidence
/// interval of the Wilcoxon signed-rank test (exact null distribution), shown
/// on the ratio scale as exp(estimate) [exp(low), exp(high)]. Rank methods
/// because this VM's samples come in two speeds: a round that caught the slow
/// one moves a mean and a standard deviation a lot and a rank statistic little.
/// The signed-rank interval needs ≥ 6 rounds; with 2–5 rounds (the idle
/// workloads) the row falls back to the paired t-interval on the log ratios.
///
/// `bench diff` compares two runs the same way: the Hodges–Lehmann shift
/// between the two runs' log ratios (median of all differences yⱼ − xᵢ) with
/// the Mann–Whitney (Wilcoxon rank-sum) 95% interval, as a relative change
/// exp(Δ) − 1; Welch's t-interval when a side has fewer than 4 rounds.
enum Statistics {
    /// How the intervals are computed, as printed in reports.
    static let method = "ratio = Hodges-Lehmann estimate of the per-round log ratio (allocator / baseline, same round); "
        + "95% CI = Wilcoxon signed-rank interval (exact), paired t-interval on the log ratios with 2-5 rounds"

    /// Two-sided 95% quantile of Student's t for 1...30 degrees of freedom.
    static let t975: [Double] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ]

    /// t₀.₉₇₅ for `df` degrees of freedom (fractional df, as Welch's, is rounded down: a wider interval).
    static func tQuantile975(df: Double) -> Double {
        guard df >= 1, df.isFinite else { return .infinity }
        if df <= 30 { return t975[Int(df.rounded(.down)) - 1] }
        // Cornish–Fisher expansion around the normal quantile; error < 1e-4 beyond 30 df.
        let z = 1.959964
        return z + (z * z * z + z) / (4 * df) + (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * df * df)
    }

    static func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(xs.count) }

    /// Sample variance (n − 1 in the denominator).
    static func variance(_ xs: [Double]) -> Double {
        guard xs.count > 1 else { return .nan }
        let m = mean(xs)
        return xs.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(xs.count - 1)
    }

    static func median(_ xs: [Double]) -> Double { Stats.median(xs.sorted()) }

    /// A point estimate and its 95% interval.
    struct Interval: Codable, Sendable, Equatable {
        var estimate: Double
        var low: Double
        var high: Double
    }

    /// Per-round log ratios of `a` to `b`, paired by index (the shorter length wins); non-positive values are skipped.
    static func logRatios(_ a: [Double], _ b: [Double]) -> [Double] {
        zip(a, b).compactMap { x, y in x > 0 && y > 0 && x.isFinite && y.isFinite ? log(x / y) : nil }
    }

    /// The ratio a / b with its 95% interval on the ratio scale (see the type's comment); nil with fewer than 2 pairs.
    static func pairedRatio(_ a: [Double], _ b: [Double]) -> Interval? {
        let d = logRatios(a, b)
        guard d.count >= 2 else { return nil }
        let i = signedRankInterval(d) ?? tInterval(d)
        return Interval(estimate: exp(i.estimate), low: exp(i.low), high: exp(i.high))
    }

    /// One-sample t-interval for the mean of `d` (at least 2 values).
    static func tInterval(_ d: [Double]) -> Interval {
        let m = mean(d)
        let half = tQuantile975(df: Double(d.count - 1)) * (variance(d) / Double(d.count)).squareRoot()
        return Interval(estimate: m, low: m - half, high: m + half)
    }

    /// Largest c with P(T ≤ c) ≤ 0.025 for the signed-rank statistic T of n values (nil when even c = 0 is too likely).
    static func signedRankCritical(_ n: Int) -> Int? {
        let total = n * (n + 1) / 2
        if n > 60 {  // normal approximation
            let c = Double(total) / 2 - 1.959964 * (Double(n * (n + 1) * (2 * n + 1)) / 24).squareRoot()
            return c >= 0 ? Int(c.rounded(.down)) : nil
        }
        var counts = [Double](repeating: 0, count: total + 1)
        counts[0] = 1
        for i in 1...n {
            for s in stride(from: total, through: i, by: -1) { counts[s] += counts[s - i] }
        }
        let all = pow(2.0, Double(n))
        var cum = 0.0
        var c: Int? = nil
        for s in 0...total {
            cum += counts[s]
            if cum / all <= 0.025 { c = s } else { break }
        }
        return c
    }

    /// Hodges–Lehmann estimate and Wilcoxon signed-rank 95% interval of the centre of `d`; nil below 6 values.
    static func signedRankInterval(_ d: [Double]) -> Interval? {
        let n = d.count
        guard n >= 2, let c = signedRankCritical(n) else { return nil }
        var walsh: [Double] = []
        walsh.reserveCapacity(n * (n + 1) / 2)
        for i in 0..<n { for j in i..<n { walsh.append((d[i] + d[j]) / 2) } }
        walsh.sort()
        return Interval(estimate: Stats.median(walsh), low: walsh[c], high: walsh[walsh.count - 1 - c])
    }

    /// Largest c with P(U ≤ c) ≤ 0.025 for the Mann–Whitney statistic U of samples of m and n values.
    static func rankSumCritical(_ m: Int, _ n: Int) -> Int? {
        let mn = m * n
        if mn > 2500 {  // normal approximation
            let c = Double(mn) / 2 - 1.959964 * (Double(mn * (m + n + 1)) / 12).squareRoot()
            return c >= 0 ? Int(c.rounded(.down)) : nil
        }
        // f[j][u]: ways for i values of the first sample and j of the second to give U = u (rolling over i).
        var f = [[Double]](repeating: [Double](repeating: 0, count: mn + 1), count: n + 1)
        for j in 0...n { f[j][0] = 1 }  // i = 0: U = 0
        for _ in 1...m {
            var g = [[Double]](repeating: [Double](repeating: 0, count: mn + 1), count: n + 1)
            g[0][0] = 1
            for j in 1...n {
                for u in 0...mn {
                    // The largest of the i + j values is in the second sample (adds nothing) or in the first
                    // (it exceeds all j values of the second: adds j).
                    g[j][u] = g[j - 1][u] + (u >= j ? f[j][u - j] : 0)
                }
            }
            f = g
        }
        let all = f[n].reduce(0, +)
        var cum = 0.0
        var c: Int? = nil
        for u in 0...mn {
            cum += f[n][u]
            if cum / all <= 0.025 { c = u } else { break }
        }
        return c
    }

    /// Hodges–Lehmann shift y − x and its Mann–Whitney 95% interval; nil when the samples are too small.
    static func rankSumInterval(x: [Double], y: [Double]) -> Interval? {
        guard x.count >= 1, y.count >= 1, let c = rankSumCritical(x.count, y.count) else { return nil }
        var diffs: [Double] = []
        diffs.reserveCapacity(x.count * y.count)
        for a in x { for b in y { diffs.append(b - a) } }
        diffs.sort()
        return Interval(estimate: Stats.median(diffs), low: diffs[c], high: diffs[diffs.count - 1 - c])
    }

    /// The shift from x to y (values on the log scale) as a relative change exp(Δ) − 1 with its 95%
    /// interval: Hodges–Lehmann and Mann–Whitney with ≥ 4 values a side, else Welch; nil below 2 a side.
    static func relativeChange(old x: [Double], new y: [Double]) -> Interval? {
        guard x.count >= 2, y.count >= 2 else { return nil }
        if x.count >= 4, y.count >= 4, let i = rankSumInterval(x: x, y: y) {
            return Interval(estimate: exp(i.estimate) - 1, low: exp(i.low) - 1, high: exp(i.high) - 1)
        }
        return welchChange(old: x, new: y)
    }

    /// Welch's 95% interval for mean(y) − mean(x), as a relative change exp(Δ) − 1.
    static func welchChange(old x: [Double], new y: [Double]) -> Interval? {
        guard x.count >= 2, y.count >= 2 else { return nil }
        let vx = variance(x) / Double(x.count), vy = variance(y) / Double(y.count)
        let delta = mean(y) - mean(x)
        let se = (vx + vy).squareRoot()
        // Welch–Satterthwaite degrees of freedom (both variances zero: the change is exact).
        let df = se > 0 ? (vx + vy) * (vx + vy)
            / (vx * vx / Double(x.count - 1) + vy * vy / Double(y.count - 1)) : .infinity
        let half = se > 0 ? tQuantile975(df: df) * se : 0
        return Interval(estimate: exp(delta) - 1, low: exp(delta - half) - 1, high: exp(delta + half) - 1)
    }
}
