/// One value per index, written by parallel workers each at its own indices and read after
/// they are done (losses, built examples, errors of a parallel step).
final class WorkerSlots<T>: @unchecked Sendable {
    private let slots: UnsafeMutableBufferPointer<T?>

    init(_ count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
    }

    deinit {
        _ = slots.deinitialize()
        slots.deallocate()
    }

    subscript(index: Int) -> T? {
        get { slots[index] }
        set { slots[index] = newValue }
    }

    /// The values in index order, nil slots left out.
    var values: [T] { slots.compactMap { $0 } }
}
