package clock

import (
	"testing"
	"time"
)

func TestFake_TimersFireInOrderWhenAdvanced(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	a, b, stopped := f.NewTimer(2*time.Second), f.NewTimer(time.Second), f.NewTimer(time.Second)
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop() = false on a live timer or true on a stopped one")
	}
	if got := f.Pending(); len(got) != 2 || !got[0].Equal(start.Add(time.Second)) || !got[1].Equal(start.Add(2*time.Second)) {
		t.Fatalf("Pending() = %v, want +1s and +2s", got)
	}
	f.Advance(999 * time.Millisecond)
	select {
	case <-b.C():
		t.Fatal("timer fired before its deadline")
	default:
	}
	f.Advance(time.Millisecond)
	if got := <-b.C(); !got.Equal(start.Add(time.Second)) {
		t.Errorf("timer sent %v, want %v", got, start.Add(time.Second))
	}
	f.AdvanceTo(start.Add(5 * time.Second))
	<-a.C()
	if a.Stop() {
		t.Error("Stop() = true on a fired timer")
	}
	if !f.Now().Equal(start.Add(5*time.Second)) || len(f.Pending()) != 0 {
		t.Errorf("Now() = %v, Pending() = %v; want +5s and none", f.Now(), f.Pending())
	}
	select {
	case <-stopped.C():
		t.Error("a stopped timer fired")
	case <-f.NewTimer(0).C():
	}
}

func TestReal_TimerFires(t *testing.T) {
	tm := Real.NewTimer(0)
	<-tm.C()
	if Real.Now().IsZero() {
		t.Error("Real.Now() is zero")
	}
}
