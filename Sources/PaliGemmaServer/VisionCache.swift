import Foundation
import PaliGemma

/// The projected SigLIP features of recent images, by the SHA-256 of the image file's bytes,
/// in a bounded least-recently-used cache: several questions about one image encode it once.
/// (The prompt's KV cannot be shared the same way: image and prompt tokens attend to each other.)
public final class VisionCache: @unchecked Sendable {
    public let capacity: Int
    private let lock = NSLock()
    private var entries: [String: Matrix] = [:]
    /// Keys from least to most recently used.
    private var order: [String] = []
    public private(set) var hits = 0
    public private(set) var misses = 0

    public init(capacity: Int) { self.capacity = max(0, capacity) }

    public var count: Int { lock.withLock { entries.count } }

    /// Whether the features are cached (without counting a hit or touching the order).
    public func contains(_ key: String) -> Bool { lock.withLock { entries[key] != nil } }

    /// The cached features, marked as just used; counts a hit or a miss.
    public func features(for key: String) -> Matrix? {
        lock.withLock {
            guard let m = entries[key] else {
                misses += 1
                return nil
            }
            hits += 1
            touch(key)
            return m
        }
    }

    public func insert(_ features: Matrix, for key: String) {
        guard capacity > 0 else { return }
        lock.withLock {
            if entries.updateValue(features, forKey: key) != nil {
                touch(key)
                return
            }
            order.append(key)
            while order.count > capacity {
                entries[order.removeFirst()] = nil
            }
        }
    }

    private func touch(_ key: String) {
        if let i = order.firstIndex(of: key) { order.remove(at: i) }
        order.append(key)
    }
}
