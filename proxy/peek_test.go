package proxy

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/egressd/egressd/internal/budget"
)

// TestPeekReader: reads are charged peekCost per byte to the sandbox's
// share and the total, a read the budget cannot cover fails, release
// gives everything back and reads go on uncharged.
func TestPeekReader(t *testing.T) {
	b := budget.New(3*1000, 3*1500)
	a := &peekReader{r: bytes.NewReader(make([]byte, 4000)), b: b, sandbox: "a"}
	if _, err := io.ReadFull(a, make([]byte, 900)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Read(make([]byte, 200)); !errors.Is(err, errPeekBudget) {
		t.Fatalf("read past the sandbox's share: %v", err)
	}
	other := &peekReader{r: bytes.NewReader(make([]byte, 4000)), b: b, sandbox: "b"}
	if _, err := io.ReadFull(other, make([]byte, 700)); !errors.Is(err, errPeekBudget) {
		t.Fatalf("read past the total: %v", err)
	}
	a.release()
	other.release()
	if b.Held() != 0 {
		t.Fatalf("budget not empty after release: %d", b.Held())
	}
	if _, err := io.ReadFull(a, make([]byte, 2000)); err != nil {
		t.Fatalf("read after release: %v", err)
	}
	if b.Held() != 0 {
		t.Fatalf("a released reader still charges: %d", b.Held())
	}
}
