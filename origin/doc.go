// Package origin simulates the SaaS origins behind the cloud gateway
// (www.social.test, app.files.test, ...) so that every inner flow of a
// scenario can be checked end to end by SHA-256, in both directions.
//
// # Payloads
//
// Payload(seed, size) streams size deterministic bytes (ChaCha8 keyed by the
// seed); PayloadSHA256 hashes that stream. Both ends of a flow can therefore
// compute what the other end must have sent without ever storing it.
//
// # Server
//
// A Server listens, through a hostnet.Stack, on every logical address and port
// of its sites: one listener per address and port, shared by every site on it
// and told apart by TLS SNI (an unknown name fails the handshake) and by the
// Host header (a name not served there gets 421). HTTPS serves HTTP/1.1 and
// HTTP/2 (ALPN); plain HTTP serves HTTP/1.1. Each site answers:
//
//	GET  /                         a small HTML page naming the site
//	GET  /payload?size=N&seed=S    N deterministic bytes; X-Pinwall-Sha256 is their hash
//	POST /flow?resp=N&seed=S       the workload's unit, below
//	POST /echo                     the request body, streamed back
//
// A flow: the client sends a body and its SHA-256 in X-Pinwall-Sha256. The
// origin hashes the body as it arrives and checks it (a mismatch is 422, with
// both hashes in the reply and the access log), then replies with N bytes of
// Payload(S, N), their hash in X-Pinwall-Sha256 and the hash of what it
// received in X-Pinwall-Request-Sha256. RunFlow is the client half: it streams
// the body and verifies the reply and the echoed request hash, through
// whatever http.Client the caller supplies (direct, or dialing into a tunnel).
//
//	RunFlow ──POST /flow, body=Payload(seed), X-Pinwall-Sha256──► origin
//	        (tunnel, firewall, gateway: anything may alter bytes)   hash body, compare → 422 on mismatch
//	        ◄──200, body=Payload(seed'), X-Pinwall-Sha256, X-Pinwall-Request-Sha256──
//	hash reply, compare with PayloadSHA256(seed') and with the header;
//	compare X-Pinwall-Request-Sha256 with what was sent
//	→ FlowResult{Verified}, or a *failure.Error with CausePayloadMismatch
//
// Every request is logged as one JSON line (Record) to Config.AccessLog and
// kept in a bounded in-memory ring (Server.Records).
//
// # Goroutines
//
// Start runs one serving goroutine per listener and one that closes them
// when the Start context is done. Close cancels that context and waits for
// the listeners, every connection and every handler.
package origin
