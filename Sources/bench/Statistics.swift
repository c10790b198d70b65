import Foundation

/// The statistics `bench` reports and `bench diff` tests with.
///
/// Ratios are paired by round: round r of allocator A and round r of the
/// baseline ran back to back (interleaved children), so a slow spell of the
/// machine lands on both. For each row the per-round log ratios
/// dᵣ = ln(aᵣ / bᵣ) are summarised by their mean d̄ and standard deviation s;
/// the reported ratio is exp(d̄) (the geometric mean of the per-round ratios)
/// and its 95% confidence interval is the paired t-interval
/// exp(d̄ ± t₀.₉₇₅,ₙ₋₁ · s / √n). `bench diff` compares two runs with Welch's
/// t-interval on the difference of the two runs' mean log ratios (or mean log
/// times), which is an interval on the relative change exp(Δ) − 1.
enum Statistics {
    /// How the intervals are computed, as printed in reports.
    static let method = "95% CI: paired t-interval on the per-round log ratio (allocator / baseline, same round), "
        + "shown as exp(mean) [exp(lower), exp(upper)]; needs >= 2 rounds"

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

    /// The ratio a / b with its paired t-interval, on the ratio scale; nil with fewer than 2 pairs.
    static func pairedRatio(_ a: [Double], _ b: [Double]) -> Interval? {
        let d = logRatios(a, b)
        guard d.count >= 2 else { return nil }
        let m = mean(d)
        let half = tQuantile975(df: Double(d.count - 1)) * (variance(d) / Double(d.count)).squareRoot()
        return Interval(estimate: exp(m), low: exp(m - half), high: exp(m + half))
    }

    /// Welch's 95% interval for mean(y) − mean(x) (values on the log scale), as a relative change
    /// exp(Δ) − 1; nil when either side has fewer than 2 values.
    static func relativeChange(old x: [Double], new y: [Double]) -> Interval? {
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
