/// A row-major float32 matrix that owns its memory: the form every activation takes.
/// Reference semantics (it is a buffer, not a value); ops write into matrices they are given.
public final class Matrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let data: UnsafeMutablePointer<Float>

    public init(rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        let n = max(rows * cols, 1)
        data = UnsafeMutablePointer<Float>.allocate(capacity: n)
        data.initialize(repeating: 0, count: n)
    }

    public convenience init(rows: Int, cols: Int, values: [Float]) {
        precondition(values.count == rows * cols, "values do not fill the matrix")
        self.init(rows: rows, cols: cols)
        values.withUnsafeBufferPointer { if let base = $0.baseAddress { data.update(from: base, count: values.count) } }
    }

    deinit { data.deallocate() }

    public var count: Int { rows * cols }

    /// Pointer to the start of row `r`.
    @inline(__always) public func row(_ r: Int) -> UnsafeMutablePointer<Float> { data + r * cols }

    public subscript(r: Int, c: Int) -> Float {
        get { data[r * cols + c] }
        set { data[r * cols + c] = newValue }
    }

    /// A copy of the contents.
    public var values: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// A copy of rows [from, to).
    public func rows(_ range: Range<Int>) -> Matrix {
        let m = Matrix(rows: range.count, cols: cols)
        m.data.update(from: row(range.lowerBound), count: range.count * cols)
        return m
    }
}
