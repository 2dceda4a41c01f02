package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress prints a one-line progress bar to w, at most a few times a
// second.
type progress struct {
	w     io.Writer
	label string
	last  time.Time
	shown bool
}

func newProgress(w io.Writer, label string) *progress { return &progress{w: w, label: label} }

func (p *progress) update(done, total uint64) {
	if time.Since(p.last) < 200*time.Millisecond && done != total {
		return
	}
	p.last = time.Now()
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * 30)
	fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d", p.label, strings.Repeat("#", n), strings.Repeat(".", 30-n), done, total)
	p.shown = true
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprintln(p.w)
	}
}
