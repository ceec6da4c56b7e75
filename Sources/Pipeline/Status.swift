import Foundation
import Store

/// Per-stage state of a run for `kneuron status`.
public struct RunStatus: Sendable {
    /// One line per stage: name, done, rows, seconds, and for attribute the shards done.
    public struct Line: Sendable {
        /// The stage.
        public var stage: Stage
        /// True when the ledger records the stage as finished.
        public var done: Bool
        /// Rows the stage wrote, from the ledger; 0 when not done.
        public var rows: Int
        /// Recorded wall time, seconds; 0 when not done.
        public var seconds: Double
        /// Progress note: for `train` the epochs recorded and the last select accuracy, for
        /// `attribute` the shards done per method (each only when there are any); otherwise empty.
        public var detail: String
    }
    /// One line per stage, in pipeline order.
    public var lines: [Line]
    /// True when every stage is recorded.
    public var complete: Bool { lines.allSatisfy(\.done) }

    /// Reads the ledger (and shard/epoch progress of unfinished stages) from `db`.
    public static func read(db: RunDatabase) throws -> RunStatus {
        let ledger = Dictionary(uniqueKeysWithValues: try db.stages().map { ($0.stage, $0) })
        var lines: [Line] = []
        for stage in Stage.allCases {
            let rec = ledger[stage.rawValue]
            var detail = ""
            switch stage {
            case .train:
                let epochs = try db.epochs()
                if let last = epochs.last {
                    detail = String(format: "%d epochs recorded; last select accuracy %.3f", epochs.count, last.selectAccuracy)
                }
            case .attribute:
                let parts = try ["activation", "integrated_gradients"].compactMap { m -> String? in
                    let n = try db.finishedShards(method: m).count
                    return n > 0 ? "\(m): \(n) shards done" : nil
                }
                detail = parts.joined(separator: "; ")
            default: break
            }
            lines.append(Line(stage: stage, done: rec != nil, rows: rec?.rowsWritten ?? 0, seconds: rec?.seconds ?? 0, detail: detail))
        }
        return RunStatus(lines: lines)
    }

    /// A plain-text table.
    public var text: String {
        var out = "stage      state  rows       seconds  detail\n"
        for l in lines {
            out += l.stage.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)
                + (l.done ? "done " : "left ").padding(toLength: 7, withPad: " ", startingAt: 0)
                + String(l.rows).padding(toLength: 11, withPad: " ", startingAt: 0)
                + String(format: "%7.1f  ", l.seconds) + l.detail + "\n"
        }
        return out
    }
}
