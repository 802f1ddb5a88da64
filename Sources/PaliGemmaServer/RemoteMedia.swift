import AsyncHTTPClient
import Foundation
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Whether, and how, the server fetches images and videos given as http(s) URLs
/// (`--allow-remote-images`). Off by default: a server that fetches URLs for its clients can be
/// turned against the network it sits in (server-side request forgery), so only public addresses
/// are fetched unless `allowPrivateAddresses`, and every redirect is checked again.
public struct RemoteMediaPolicy: Sendable {
    /// Fetch http(s) URLs at all.
    public var enabled: Bool
    /// Seconds for the whole fetch, redirects and body included.
    public var timeout: Double
    /// Redirects followed before the fetch is refused.
    public var maxRedirects: Int
    /// Also fetch from loopback, private, link-local and other non-public addresses.
    public var allowPrivateAddresses: Bool
    /// Which resolved addresses may be connected to; nil: `IPAddress.isPublic`, or any when
    /// `allowPrivateAddresses`. (Tests set it to allow one loopback address and not another.)
    var addressFilter: (@Sendable (IPAddress) -> Bool)?

    public init(enabled: Bool = false, timeout: Double = 10, maxRedirects: Int = 5, allowPrivateAddresses: Bool = false) {
        self.enabled = enabled
        self.timeout = timeout
        self.maxRedirects = maxRedirects
        self.allowPrivateAddresses = allowPrivateAddresses
    }

    func allows(_ address: IPAddress) -> Bool {
        if let addressFilter { return addressFilter(address) }
        return allowPrivateAddresses || address.isPublic
    }
}

/// An IPv4 or IPv6 address, as its 4 or 16 bytes.
struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    let bytes: [UInt8]

    /// A numeric address ("93.184.216.34", "2606:2800::1"); nil for anything else.
    init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    init(bytes: [UInt8]) { self.bytes = bytes }

    var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        let ok = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) } != nil
        return ok ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
    }

    /// The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or
    /// 6to4 (2002:aabb:ccdd::) IPv6 address.
    var embeddedIPv4: IPAddress? {
        guard bytes.count == 16 else { return nil }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff { return IPAddress(bytes: Array(bytes[12..<16])) }
        if bytes[0..<12] == [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0] { return IPAddress(bytes: Array(bytes[12..<16])) }
        if bytes[0] == 0x20 && bytes[1] == 0x02 { return IPAddress(bytes: Array(bytes[2..<6])) }
        return nil
    }

    /// Reachable on the public internet: not loopback, private (RFC 1918, unique local),
    /// shared (100.64/10), link-local (169.254/16 and fe80::/10, where cloud metadata lives),
    /// unspecified, multicast, broadcast, documentation, benchmarking or reserved (IANA's
    /// special-purpose registries). IPv6 outside 2000::/3 is not public.
    var isPublic: Bool {
        if bytes.count == 4 {
            let (a, b, c) = (bytes[0], bytes[1], bytes[2])
            switch a {
            case 0, 10, 127: return false
            case 100 where (64...127).contains(b): return false
            case 169 where b == 254: return false
            case 172 where (16...31).contains(b): return false
            case 192 where b == 168: return false
            case 192 where b == 0 && (c == 0 || c == 2): return false
            case 192 where b == 88 && c == 99: return false
            case 198 where b == 18 || b == 19: return false
            case 198 where b == 51 && c == 100: return false
            case 203 where b == 0 && c == 113: return false
            case 224...255: return false
            default: return true
            }
        }
        if let v4 = embeddedIPv4 { return v4.isPublic }
        guard bytes[0] & 0xe0 == 0x20 else { return false }                    // 2000::/3, global unicast
        if bytes[0] == 0x20 && bytes[1] == 0x01 && bytes[2] == 0x0d && bytes[3] == 0xb8 { return false } // 2001:db8::/32
        if bytes[0] == 0x20 && bytes[1] == 0x01 && bytes[2] < 0x02 { return false }                       // 2001::/23, IETF
        return true
    }
}

/// Fetches one http(s) URL for a request's image or video under `RemoteMediaPolicy`: the host
/// is resolved here and every address checked before connecting, and the connection goes to a
/// checked address (AsyncHTTPClient's `dnsOverride`), so a name that resolves differently the
/// second time cannot slip through. Redirects are followed by hand, each target checked the
/// same way. The body is read up to `maxBytes` and the whole fetch must end within the timeout.
struct RemoteFetch {
    let policy: RemoteMediaPolicy
    /// "image" or "video": names the error codes, like `MediaBytes`.
    let kind: String
    let maxBytes: Int

    func fetch(_ reference: String, field: String) async throws -> Data {
        guard policy.enabled else {
            throw ServerError.badRequest("\(field): remote \(kind) URLs are not fetched by this server (it was started without --allow-remote-images); send the \(kind) as a data: URL (base64)",
                                         param: field, code: "remote_\(kind)s_disabled")
        }
        let deadline = NIODeadline.now() + .milliseconds(Int64(policy.timeout * 1000))
        var url = reference
        for _ in 0...policy.maxRedirects {
            let (host, address) = try await check(url, field: field)
            var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow,
                                                         timeout: .init(connect: .milliseconds(Int64(policy.timeout * 1000)),
                                                                        read: .milliseconds(Int64(policy.timeout * 1000))))
            configuration.dnsOverride = [host: address.description]
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            do {
                let result = try await get(url, client: client, deadline: deadline, field: field)
                try? await client.shutdown()
                switch result {
                case let .body(data): return data
                case let .redirect(next): url = next
                }
            } catch {
                try? await client.shutdown()
                if error is ServerError { throw error }
                if NIODeadline.now() >= deadline || (error as? HTTPClientError) == .deadlineExceeded || (error as? HTTPClientError) == .readTimeout {
                    throw ServerError.badRequest("\(field): fetching the \(kind) took longer than the server's limit of \(policy.timeout) s",
                                                 param: field, code: "remote_fetch_timeout")
                }
                throw ServerError.badRequest("\(field): the \(kind) could not be fetched: \(error)", param: field, code: "remote_fetch_failed")
            }
        }
        throw ServerError.badRequest("\(field): the \(kind)'s URL redirects more than \(policy.maxRedirects) times", param: field, code: "too_many_redirects")
    }

    private enum Outcome { case body(Data), redirect(String) }

    private func get(_ url: String, client: HTTPClient, deadline: NIODeadline, field: String) async throws -> Outcome {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "User-Agent", value: "paligemma-server")
        let response = try await client.execute(request, deadline: deadline)
        let status = Int(response.status.code)
        if [301, 302, 303, 307, 308].contains(status) {
            guard let location = response.headers.first(name: "location"),
                  let next = URL(string: location, relativeTo: URL(string: url))?.absoluteURL.absoluteString else {
                throw ServerError.badRequest("\(field): the \(kind)'s URL answered \(status) without a usable Location", param: field, code: "remote_fetch_failed")
            }
            return .redirect(next)
        }
        guard (200..<300).contains(status) else {
            throw ServerError.badRequest("\(field): fetching the \(kind) answered HTTP \(status)", param: field, code: "remote_fetch_failed")
        }
        if let length = response.headers.first(name: "content-length").flatMap(Int.init), length > maxBytes {
            throw ServerError.tooLarge("\(field): the \(kind) is \(length) bytes, over the server's limit of \(maxBytes)", param: field, code: "\(kind)_too_large")
        }
        var data = Data()
        for try await chunk in response.body {
            guard data.count + chunk.readableBytes <= maxBytes else {
                throw ServerError.tooLarge("\(field): the \(kind) is over the server's limit of \(maxBytes) bytes", param: field, code: "\(kind)_too_large")
            }
            data.append(contentsOf: chunk.readableBytesView)
        }
        return .body(data)
    }

    /// The URL's host and the address to connect to, after checking the scheme and every
    /// address the host resolves to (one refused address refuses the URL).
    private func check(_ url: String, field: String) async throws -> (host: String, address: IPAddress) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty else {
            throw ServerError.badRequest("\(field): the \(kind)'s URL (or a redirect's) is not an http(s) URL with a host", param: field, code: "bad_url")
        }
        guard components.user == nil, components.password == nil else {
            throw ServerError.badRequest("\(field): URLs with credentials are not fetched", param: field, code: "bad_url")
        }
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let addresses = await Self.resolve(bare)
        guard let first = addresses.first else {
            throw ServerError.badRequest("\(field): the \(kind)'s host \(bare) does not resolve", param: field, code: "remote_fetch_failed")
        }
        if let refused = addresses.first(where: { !policy.allows($0) }) {
            throw ServerError(.forbidden, "\(field): the \(kind)'s host \(bare) resolves to \(refused), which is not a public address; this server fetches only from public addresses",
                              param: field, code: "remote_address_not_allowed")
        }
        return (bare, first)
    }

    /// Every address `getaddrinfo` gives for the host (a blocking call, made on a short-lived
    /// thread of its own: not on Swift's cooperative pool, and not on NIO's singleton thread pool,
    /// which would then live to the process's exit).
    static func resolve(_ host: String) async -> [IPAddress] {
        if let literal = IPAddress(host) { return [literal] }
        return await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: lookup(host)) }.start()
        }
    }

    private static func lookup(_ host: String) -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0 else { return [] }
        defer { freeaddrinfo(list) }
        var found: [IPAddress] = []
        var node = list
        while let entry = node {
            if let sa = entry.pointee.ai_addr {
                if entry.pointee.ai_family == AF_INET {
                    let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                    found.append(IPAddress(bytes: withUnsafeBytes(of: a) { Array($0) }))
                } else if entry.pointee.ai_family == AF_INET6 {
                    let a = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                    found.append(IPAddress(bytes: withUnsafeBytes(of: a) { Array($0) }))
                }
            }
            node = entry.pointee.ai_next
        }
        var seen = Set<IPAddress>()
        return found.filter { seen.insert($0).inserted }
    }
}
