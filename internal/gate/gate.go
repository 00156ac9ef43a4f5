// Package gate decides who may join and listen, and makes refusing cheap
// (DESIGN.md principles 3-5). It holds pure logic with no HTTP and no I/O:
//
//   - tickets: stateless, HMAC-signed, expiring, bound to a space and a
//     listener and carrying a priority Tier; checked in well under a
//     microsecond without allocating (Signer.Issue, Signer.Verify);
//   - proof of work: stateless signed challenges, a client solver and a
//     verifier with a bounded replay cache (Signer.IssueChallenge, Solve,
//     Signer.VerifySolution), armed by PoWPolicy from attack signals or by the
//     operator;
//   - rate limits: a token Bucket and a SourceLimiter keyed by address and by
//     prefix (/24 IPv4, /56 IPv6) in bounded memory, and ClientAddr to find the
//     client behind trusted proxies;
//   - capacity: a node-wide Capacity (places and the global join rate) shared
//     by one Room per space, each a FIFO waiting room by tier with exact
//     positions, an ETA, ghost removal, a grace for admitted listeners to
//     connect and a scheduled opening that admits the herd in order.
//
// Every refusal has a Refusal: its name in metrics and whether it is
// evidence of abuse or of demand beyond capacity, for the ops layer to tell
// an attack from an overload. Its caller counts it once, by that reason.
// Everything that depends on time takes now as an argument, so tests drive
// a clock by hand.
//
// The api package wires it: POST /spaces/{id}/join runs the join limiter,
// then the proof-of-work check when armed, then Room.Join, and issues a
// ticket on admission; every listen request runs the listen limiter and
// Signer.Verify, then Room.Connect, and Room.Leave when the stream ends.
package gate

// Config gathers the configuration of every part of the gate.
type Config struct {
	Signer SignerConfig
	PoW    PoWConfig
	Join   LimiterConfig // per-source limits on POST /join
	Listen LimiterConfig // per-source limits on listen requests
	Node   CapacityConfig
	Room   RoomConfig
}

// DefaultConfig returns the defaults of every part, as each part's own
// DefaultXConfig describes them.
func DefaultConfig() Config {
	return Config{
		Signer: DefaultSignerConfig(),
		PoW:    DefaultPoWConfig(),
		Join:   DefaultJoinLimiterConfig(),
		Listen: DefaultListenLimiterConfig(),
		Node:   DefaultCapacityConfig(),
		Room:   DefaultRoomConfig(),
	}
}
