package proxy

import (
	"errors"
	"io"

	"github.com/egressd/egressd/internal/budget"
)

// Peek memory. Until a flow is admitted, the bytes it sent (a ClientHello,
// an HTTP request head) are held while egressd waits for the rest, up to
// maxHelloBytes or maxHTTPHead a connection: a sandbox opening thousands of
// connections that each send most of a hello and then stall would hold
// gigabytes. Every byte read while peeking is charged, peekCost times (the
// buffer it lands in grows by doubling, a hello spanning records is copied
// once more), to a budget per sandbox and one for all; a read the budget
// cannot cover refuses the flow (reason peek-limit), and admission or the
// flow's end returns what it charged.

// peekCost is what one byte read while peeking may cost in memory.
const peekCost = 3

var errPeekBudget = errors.New("peek memory budget used up (proxy.max_peek_bytes_per_sandbox or proxy.max_peek_bytes)")

// peekReader charges what a flow reads while it is peeked; after release
// it reads freely.
type peekReader struct {
	r       io.Reader
	b       *budget.Budget
	sandbox string
	charged int64
	done    bool
}

func (p *peekReader) Read(buf []byte) (int, error) {
	if p.done {
		return p.r.Read(buf)
	}
	want := int64(len(buf)) * peekCost
	if !p.b.Take(p.sandbox, want) {
		return 0, errPeekBudget
	}
	n, err := p.r.Read(buf)
	p.b.Give(p.sandbox, int64(len(buf)-n)*peekCost)
	p.charged += int64(n) * peekCost
	return n, err
}

// release returns what p charged and stops charging; it may be called
// more than once.
func (p *peekReader) release() {
	p.b.Give(p.sandbox, p.charged)
	p.charged, p.done = 0, true
}
