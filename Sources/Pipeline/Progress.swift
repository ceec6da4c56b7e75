import Foundation

/// Progress of a long stage on stderr: `done/total`, rate and ETA. On a terminal the line
/// is redrawn in place; otherwise a plain line is printed at most every 10 seconds (and at
/// the end), so batch-job logs stay readable. `quiet` silences it.
public final class ProgressReporter: @unchecked Sendable {
    let label: String
    let total: Int
    let unit: String
    let quiet: Bool
    let start = Date()
    var lastPrint = Date.distantPast
    let isTerminal: Bool

    /// - Parameters: label (e.g. `train epoch 3/10`), total work units, unit name, quiet.
    public init(_ label: String, total: Int, unit: String = "items", quiet: Bool) {
        self.label = label
        self.total = total
        self.unit = unit
        self.quiet = quiet
        isTerminal = isatty(2) != 0
    }

    /// Reports `done` of `total` units finished.
    public func update(_ done: Int) {
        guard !quiet else { return }
        let now = Date()
        let finished = done >= total
        let interval: TimeInterval = isTerminal ? 0.2 : 10
        guard finished || now.timeIntervalSince(lastPrint) >= interval else { return }
        lastPrint = now
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let line = String(format: "%@: %d/%d %@, %.1f %@/s, elapsed %@, ETA %@", label, done, total, unit, rate, unit,
                          Self.clock(elapsed), finished ? "0s" : Self.clock(eta))
        if isTerminal {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line + (finished ? "\n" : "")).utf8))
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
    }
}

/// Writes a message line to stderr unless quiet.
func log(_ message: String, quiet: Bool) {
    if !quiet { FileHandle.standardError.write(Data((message + "\n").utf8)) }
}
