import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import PaliGemma
import PaliGemmaJSON
@testable import PaliGemmaServer
import ServiceLifecycle
import Testing

/// A web server on 127.0.0.1 that plays the remote side: the image, redirects (to itself, to
/// another loopback address, to a file: URL, in a loop), a body over the byte cap with and
/// without Content-Length, an answer that never comes (until `stop`) and a 404.
final class ImageHost: @unchecked Sendable {
    let port: Int
    private let group: ServiceGroup
    private let running: Task<Void, Error>
    /// Set by `stop`: `/slow` answers only then, so no timeout in a test races a sleep.
    private let released = Mutex(false)

    init(image: Data) async throws {
        let released = self.released
        let router = Router()
        let png = ByteBuffer(bytes: image)
        router.get("/shapes.png") { _, _ in
            Response(status: .ok, headers: [.contentType: "image/png"], body: .init(byteBuffer: png))
        }
        router.get("/redirect") { _, _ in Response(status: .found, headers: [.location: "/shapes.png"]) }
        router.get("/redirect-twice") { _, _ in Response(status: .movedPermanently, headers: [.location: "/redirect"]) }
        router.get("/loop") { _, _ in Response(status: .temporaryRedirect, headers: [.location: "/loop"]) }
        router.get("/to-file") { _, _ in Response(status: .found, headers: [.location: "file:///etc/passwd"]) }
        router.get("/big") { _, _ in
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(repeating: 0x41, count: 300_000)))
        }
        router.get("/big-chunked") { _, _ in
            Response(status: .ok, body: ResponseBody { writer in
                for _ in 0..<30 { try await writer.write(ByteBuffer(repeating: 0x41, count: 10_000)) }
                try await writer.finish(nil)
            })
        }
        router.get("/slow") { _, _ in
            while !released.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(20)) }
            return Response(status: .ok, body: .init(byteBuffer: png))
        }
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) },
                              logger: Logger(label: "image-host"))
        group = ServiceGroup(configuration: .init(services: [app], logger: Logger(label: "image-host")))
        (running, port) = await runUntilBound(group, ports: ports)
    }

    func url(_ path: String, host: String = "127.0.0.1") -> String { "http://\(host):\(port)\(path)" }

    func stop() async throws {
        released.withLock { $0 = true }
        await group.triggerGracefulShutdown()
        try await running.value
    }
}

@Suite("Remote images (--allow-remote-images)")
struct RemoteMediaTests {
    @Test("which addresses are public")
    func publicAddresses() {
        let refused = ["127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
                       "100.64.0.1", "100.127.255.254", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250", "255.255.255.255",
                       "240.0.0.1", "192.0.2.5", "198.51.100.7", "203.0.113.9", "198.18.0.1", "198.19.255.1", "192.0.0.8",
                       "::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "2001:db8::1", "::ffff:127.0.0.1",
                       "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2001::1", "100::1", "fec0::1"]
        let allowed = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "172.15.255.255", "172.32.0.1", "100.63.255.255", "100.128.0.1",
                       "169.253.1.1", "192.169.0.1", "223.255.255.254", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
                       "::ffff:8.8.8.8", "2002:0808:0808::1"]
        for text in refused {
            guard let address = IPAddress(text) else { Issue.record("\(text) did not parse"); continue }
            #expect(!address.isPublic, "\(text) should not be public")
        }
        for text in allowed {
            guard let address = IPAddress(text) else { Issue.record("\(text) did not parse"); continue }
            #expect(address.isPublic, "\(text) should be public")
        }
        #expect(IPAddress("example.com") == nil)
        #expect(IPAddress("::ffff:127.0.0.1")?.description == "::ffff:127.0.0.1")
        #expect(IPAddress("10.0.0.1")?.description == "10.0.0.1")
    }

    @Test("a fetched image gives the same answer as the same image inline; redirects, caps, timeouts and refusals")
    func fetches() async throws {
        let png = try Data(contentsOf: repositoryRoot.appendingPathComponent("Examples/shapes.png"))
        let host = try await ImageHost(image: png)
        // Loopback stands in for the internet: 127.0.0.1 is allowed, every other address is not.
        // The timeout is long (the sanitizer passes on 2 busy cores made a 3 s one too short for a
        // small loopback fetch); a second server with a 1 s timeout checks the timeout itself.
        func policy(timeout: Double) -> RemoteMediaPolicy {
            var policy = RemoteMediaPolicy(enabled: true, timeout: timeout, maxRedirects: 2)
            policy.addressFilter = { $0 == IPAddress("127.0.0.1") }
            return policy
        }
        let s = try await TestServer {
            $0.images.maxBytes = 200_000
            $0.images.remote = policy(timeout: 300)
        }
        func expectError(_ reply: TestServer.Reply, _ status: Int, code: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(reply.status == status, "\(reply.body)", sourceLocation: sourceLocation)
            #expect(reply.json?["error"]?["code"]?.stringValue == code, "\(reply.body)", sourceLocation: sourceLocation)
            #expect(reply.json?["error"]?["param"]?.stringValue == "image", "\(reply.body)", sourceLocation: sourceLocation)
        }
        let inline = try await s.post("/v1/caption", ["image": "data:image/png;base64," + png.base64EncodedString()])
        #expect(inline.status == 200, "\(inline.body)")
        let expected = inline.json?["text"]?.stringValue
        #expect(expected?.isEmpty == false)
        for path in ["/shapes.png", "/redirect", "/redirect-twice"] {
            let reply = try await s.post("/v1/caption", ["image": host.url(path)])
            #expect(reply.status == 200, "\(path): \(reply.body)")
            #expect(reply.json?["text"]?.stringValue == expected, "\(path): \(reply.body)")
        }
        // The chat endpoint's image_url part takes the URL too.
        let chat = try await s.post("/v1/chat/completions", chatBody("caption en", image: host.url("/redirect")))
        #expect(chat.status == 200, "\(chat.body)")
        #expect(chat.json?["choices"]?[0]?["message"]?["content"]?.stringValue == expected, "\(chat.body)")

        // Every hop is checked: a redirect to another address, or away from http(s), is refused.
        let away = "http://127.0.0.2:\(host.port)/shapes.png"
        expectError(try await s.post("/v1/caption", ["image": away]), 403, code: "remote_address_not_allowed")
        expectError(try await s.post("/v1/caption", ["image": host.url("/to-file")]), 400, code: "bad_url")
        expectError(try await s.post("/v1/caption", ["image": host.url("/loop")]), 400, code: "too_many_redirects")
        expectError(try await s.post("/v1/caption", ["image": host.url("/big")]), 413, code: "image_too_large")
        expectError(try await s.post("/v1/caption", ["image": host.url("/big-chunked")]), 413, code: "image_too_large")
        expectError(try await s.post("/v1/caption", ["image": host.url("/missing")]), 400, code: "remote_fetch_failed")
        expectError(try await s.post("/v1/caption", ["image": "http://user:pw@127.0.0.1:\(host.port)/shapes.png"]), 400, code: "bad_url")
        expectError(try await s.post("/v1/caption", ["image": "http:///nohost.png"]), 400, code: "bad_url")
        #expect(try await s.request(.GET, "/health").status == 200)
        try await s.stop()

        // `/slow` answers only when the host stops, so this answer can come from the timeout alone.
        let quick = try await TestServer { $0.images.remote = policy(timeout: 1) }
        let clock = Date()
        expectError(try await quick.post("/v1/caption", ["image": host.url("/slow")]), 400, code: "remote_fetch_timeout")
        let waited = Date().timeIntervalSince(clock)
        #expect(waited >= 1, "the 1 s timeout answered after \(waited) s")
        print("[remote] the 1 s fetch timeout answered after \(String(format: "%.2f", waited)) s")
        try await quick.stop()
        try await host.stop()
    }

    @Test("by default only public addresses: loopback, private and metadata addresses are refused before connecting")
    func publicOnly() async throws {
        let s = try await TestServer { $0.images.remote = RemoteMediaPolicy(enabled: true, timeout: 2) }
        for url in ["http://127.0.0.1:9/a.png", "http://localhost:9/a.png", "http://[::1]:9/a.png", "http://169.254.169.254/latest/meta-data",
                    "https://10.0.0.1/a.png", "http://[::ffff:192.168.0.1]/a.png", "http://0.0.0.0:9/a.png"] {
            let reply = try await s.post("/v1/caption", ["image": url])
            #expect(reply.status == 403, "\(url): \(reply.body)")
            #expect(reply.json?["error"]?["code"]?.stringValue == "remote_address_not_allowed", "\(url): \(reply.body)")
        }
        // Videos go through the same fetch.
        let video = try await s.post("/v1/completions", ["prompt": "caption en", "video": "http://127.0.0.1:9/a.mp4"])
        #expect(video.status == 403, "\(video.body)")
        #expect(video.json?["error"]?["code"]?.stringValue == "remote_address_not_allowed", "\(video.body)")
        try await s.stop()
    }
}
