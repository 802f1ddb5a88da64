import Foundation

/// The decoder half of big_vision's mask VQ-VAE: turns the 16 `<seg>` codes of a
/// segmentation answer into a 64x64 mask with values in about [-1, 1] (> 0 is inside).
///
/// Checkpoint `vae-oid.npz` (PyTorch layouts; see `requiredKeys`), architecture as in
/// big_vision/evaluators/proj/paligemma/transfers/segmentation.py:
///
///     codes [16] -> codebook rows [16, 512] as a 4x4 grid (row-major)        4x4x512
///     decoder.0   conv 1x1 512->128, ReLU                                    4x4x128
///     decoder.2   x + conv1x1(relu(conv3x3(relu(conv3x3(x)))))  (net.0/2/4)  4x4x128
///     decoder.3   the same                                                   4x4x128
///     decoder.4   transposed conv k4 s2 p1 128->128, ReLU                    8x8x128
///     decoder.6   transposed conv 128->64, ReLU                              16x16x64
///     decoder.8   transposed conv 64->32, ReLU                               32x32x32
///     decoder.10  transposed conv 32->16, ReLU                               64x64x16
///     decoder.12  conv 1x1 16->1                                             64x64x1
///
/// Activations are `Matrix` [pixels, channels] with pixels in row-major (y, x) order;
/// convolutions run as matrix products (im2col for 3x3, col2im for the transposed ones).
public final class MaskDecoder: Sendable {
    /// File name of the checkpoint.
    public static let checkpointName = "vae-oid.npz"

    /// What to tell a user who has no checkpoint.
    public static let missingCheckpointHint = """
        Segmentation masks need the mask decoder checkpoint vae-oid.npz from big_vision's PaliGemma \
        assets: download gs://big_vision/paligemma/vae-oid.npz (public bucket; over HTTPS: \
        https://storage.googleapis.com/big_vision/paligemma/vae-oid.npz) and pass it with --vae FILE, \
        or put it next to the model (MODEL/vae-oid.npz) or in ~/.cache/paligemma/vae-oid.npz. \
        Without it, boxes and labels are still reported and mask64 is null.
        """

    /// Number of `<seg>` codes per object, and the mask side.
    public static let codesPerMask = 16
    public static let maskSize = 64

    /// Checkpoint arrays the decoder reads (other arrays, e.g. the encoder's, are ignored),
    /// with their PyTorch shapes: conv (out, in, kh, kw), transposed conv (in, out, kh, kw).
    public static let requiredKeys: [(name: String, shape: [Int])] = {
        var keys: [(String, [Int])] = [("_vq_vae._embedding", [128, 512]),
                                       ("decoder.0.weight", [128, 512, 1, 1]), ("decoder.0.bias", [128])]
        for block in ["decoder.2.net", "decoder.3.net"] {
            keys += [("\(block).0.weight", [128, 128, 3, 3]), ("\(block).0.bias", [128]),
                     ("\(block).2.weight", [128, 128, 3, 3]), ("\(block).2.bias", [128]),
                     ("\(block).4.weight", [128, 128, 1, 1]), ("\(block).4.bias", [128])]
        }
        for (layer, cin, cout) in [(4, 128, 128), (6, 128, 64), (8, 64, 32), (10, 32, 16)] {
            keys += [("decoder.\(layer).weight", [cin, cout, 4, 4]), ("decoder.\(layer).bias", [cout])]
        }
        keys += [("decoder.12.weight", [1, 16, 1, 1]), ("decoder.12.bias", [1])]
        return keys
    }()

    /// A convolution as a matrix product: weight [rows, cols] float32, bias per channel.
    struct Layer: Sendable {
        let weight: Tensor
        let bias: [Float]
    }

    public let path: String
    /// The key prefix found in the checkpoint ("" for big_vision's own file).
    public let keyPrefix: String
    let codebook: [Float]  // [128, 512]
    let embeddingDim: Int
    let codebookSize: Int
    let input: Layer       // [128, 512]
    let residual: [[Layer]]  // 2 blocks x (3x3 [128, 1152], 3x3 [128, 1152], 1x1 [128, 128])
    let upsample: [Layer]  // [cout*16, cin] each: row co*16 + ky*4 + kx
    let output: Layer      // [1, 16]

    /// Loads `vae-oid.npz` (or a file of the same layout).
    public convenience init(path: String) throws {
        try self.init(archive: try NPZArchive(path: path))
    }

    /// Loads the decoder from an opened archive. Keys may carry a common prefix (e.g.
    /// "model." or "vae/"): it is found from the codebook key, and every other key must
    /// carry the same one.
    public init(archive: NPZArchive) throws {
        path = archive.path
        let codebookKey = Self.requiredKeys[0].name
        let prefix = try Self.keyPrefix(names: archive.names, path: archive.path)
        keyPrefix = prefix
        var arrays: [String: NPYArray] = [:]
        for (name, shape) in Self.requiredKeys {
            let key = prefix + name
            guard archive.names.contains(key) else {
                throw PaliGemmaError.npz(path: archive.path, member: key + ".npy",
                                         reason: "missing: not a complete PaliGemma mask decoder checkpoint")
            }
            let array = try archive.array(key)
            guard array.shape == shape else {
                throw PaliGemmaError.weights(tensor: key, reason: "expected shape \(shape), found \(array.shape) in \(archive.path)")
            }
            guard array.values.allSatisfy(\.isFinite) else {
                throw PaliGemmaError.weights(tensor: key, reason: "contains NaN or infinite values in \(archive.path)")
            }
            arrays[name] = array
        }
        func get(_ name: String) throws -> NPYArray {
            guard let array = arrays[name] else { throw PaliGemmaError.weights(tensor: prefix + name, reason: "not loaded") }
            return array
        }
        func conv(_ name: String) throws -> Layer {
            // PyTorch conv weight (out, in, kh, kw) is already [out, in*kh*kw], column ci*kh*kw + ky*kw + kx.
            let w = try get(name + ".weight")
            return Layer(weight: Tensor(values: w.values, shape: [w.shape[0], w.values.count / w.shape[0]]),
                         bias: try get(name + ".bias").values)
        }
        func transposedConv(_ name: String) throws -> Layer {
            // (in, out, kh, kw) = [in, out*16] -> transposed to [out*16, in].
            let w = try get(name + ".weight")
            let cin = w.shape[0], rows = w.values.count / cin
            var t = [Float](repeating: 0, count: w.values.count)
            for ci in 0..<cin { for r in 0..<rows { t[r * cin + ci] = w.values[ci * rows + r] } }
            return Layer(weight: Tensor(values: t, shape: [rows, cin]), bias: try get(name + ".bias").values)
        }
        let embedding = try get(codebookKey)
        codebook = embedding.values
        codebookSize = embedding.shape[0]
        embeddingDim = embedding.shape[1]
        input = try conv("decoder.0")
        residual = try ["decoder.2.net", "decoder.3.net"].map { b in
            [try conv(b + ".0"), try conv(b + ".2"), try conv(b + ".4")]
        }
        upsample = try ["decoder.4", "decoder.6", "decoder.8", "decoder.10"].map(transposedConv)
        output = try conv("decoder.12")
    }

    /// The prefix before "_vq_vae._embedding" ("" for big_vision's file; "model." etc. for
    /// re-exported copies). Exactly one array may end in that name.
    static func keyPrefix(names: [String], path: String) throws -> String {
        let codebookKey = requiredKeys[0].name
        let candidates = names.filter { $0 == codebookKey || $0.hasSuffix("." + codebookKey) || $0.hasSuffix("/" + codebookKey) }
        guard candidates.count == 1, let found = candidates.first else {
            let reason = candidates.isEmpty
                ? "no '\(codebookKey)' array: not a PaliGemma mask decoder checkpoint (\(checkpointName))?"
                : "several arrays end in '\(codebookKey)': \(candidates.joined(separator: ", "))"
            throw PaliGemmaError.npz(path: path, member: nil, reason: reason)
        }
        return String(found.dropLast(codebookKey.count))
    }

    /// Decodes 16 codes (each 0...127) into the 64x64 mask, row-major, values in about [-1, 1].
    public func decode(codes: [Int]) throws -> [Float] {
        guard codes.count == Self.codesPerMask else {
            throw PaliGemmaError.input("a mask needs \(Self.codesPerMask) <seg> codes, got \(codes.count)")
        }
        if let bad = codes.first(where: { !(0..<codebookSize).contains($0) }) {
            throw PaliGemmaError.input("<seg> code \(bad) is outside 0...\(codebookSize - 1)")
        }
        // Codebook lookup: [16, 512], the 4x4 grid in row-major order.
        let x = Matrix(rows: 16, cols: embeddingDim)
        for (i, code) in codes.enumerated() {
            for j in 0..<embeddingDim { x.row(i)[j] = codebook[code * embeddingDim + j] }
        }
        var h = Ops.linear(x, input.weight, bias: input.bias)  // [16, 128]
        relu(h)
        var side = 4
        for block in residual {
            let a = Ops.linear(im2col3x3(h, side: side), block[0].weight, bias: block[0].bias)
            relu(a)
            let b = Ops.linear(im2col3x3(a, side: side), block[1].weight, bias: block[1].bias)
            relu(b)
            let c = Ops.linear(b, block[2].weight, bias: block[2].bias)
            Ops.add(c, h)
            h = c
        }
        for layer in upsample {  // side -> 2 * side
            h = transposedConv(h, side: side, layer: layer)
            relu(h)
            side *= 2
        }
        return Ops.linear(h, output.weight, bias: output.bias).values  // [4096, 1]
    }

    private func relu(_ m: Matrix) {
        for i in 0..<m.count where !(m.data[i] > 0) { m.data[i] = 0 }
    }

    /// [side*side, C] -> [side*side, C*9], column c*9 + ky*3 + kx = x[y+ky-1, x+kx-1, c] (0 outside).
    private func im2col3x3(_ x: Matrix, side: Int) -> Matrix {
        let c = x.cols
        let out = Matrix(rows: side * side, cols: c * 9)
        for y in 0..<side {
            for xx in 0..<side {
                let dst = out.row(y * side + xx)
                for ky in 0..<3 {
                    let sy = y + ky - 1
                    guard sy >= 0, sy < side else { continue }
                    for kx in 0..<3 {
                        let sx = xx + kx - 1
                        guard sx >= 0, sx < side else { continue }
                        let src = x.row(sy * side + sx)
                        for ch in 0..<c { dst[ch * 9 + ky * 3 + kx] = src[ch] }
                    }
                }
            }
        }
        return out
    }

    /// PyTorch ConvTranspose2d(kernel 4, stride 2, padding 1): input pixel (iy, ix) adds
    /// w[ci, co, ky, kx] * x to output (2*iy - 1 + ky, 2*ix - 1 + kx).
    /// [side*side, Cin] -> [(2*side)^2, Cout]
    private func transposedConv(_ x: Matrix, side: Int, layer: Layer) -> Matrix {
        let cout = layer.bias.count
        let taps = Ops.linear(x, layer.weight, bias: nil)  // [side*side, cout*16]
        let outSide = 2 * side
        let y = Matrix(rows: outSide * outSide, cols: cout)
        for p in 0..<y.rows { for co in 0..<cout { y.row(p)[co] = layer.bias[co] } }
        for iy in 0..<side {
            for ix in 0..<side {
                let t = taps.row(iy * side + ix)
                for ky in 0..<4 {
                    let oy = 2 * iy - 1 + ky
                    guard oy >= 0, oy < outSide else { continue }
                    for kx in 0..<4 {
                        let ox = 2 * ix - 1 + kx
                        guard ox >= 0, ox < outSide else { continue }
                        let dst = y.row(oy * outSide + ox)
                        let k = ky * 4 + kx
                        for co in 0..<cout { dst[co] += t[co * 16 + k] }
                    }
                }
            }
        }
        return y
    }
}
