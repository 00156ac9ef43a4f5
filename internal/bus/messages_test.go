package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestMessagesReachSubscribersInOrderAcrossConnections(t *testing.T) {
	a := open(t, "")
	b := open(t, a.URL())
	got := make(chan string, 16)
	sub, err := b.Subscribe("amphi.test.*", func(data []byte) { got <- string(data) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	flush(t, b)
	for i := range 5 {
		if err := a.Publish(fmt.Sprintf("amphi.test.%d", i), []byte{byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, a)
	for i := range 5 {
		select {
		case s := <-got:
			if want := string(rune('0' + i)); s != want {
				t.Fatalf("message %d is %q, want %q", i, s, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d never came", i)
		}
	}
}

func TestQueueMembersShareRequestsAndAnswerThem(t *testing.T) {
	a := open(t, "")
	var mu sync.Mutex
	served := map[string]int{}
	for _, name := range []string{"w1", "w2"} {
		w := open(t, a.URL())
		sub, err := w.QueueSubscribe("amphi.test.work", "workers", func(data []byte, reply string) {
			mu.Lock()
			served[string(data)]++
			mu.Unlock()
			if err := w.Publish(reply, []byte(name+":"+string(data))); err != nil {
				t.Error(err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		flush(t, w)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		msg := fmt.Sprint(i)
		ans, err := a.Request(ctx, "amphi.test.work", []byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		if s := string(ans); s != "w1:"+msg && s != "w2:"+msg {
			t.Errorf("answer %q to %q", s, msg)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for k, n := range served {
		if n != 1 {
			t.Errorf("request %s served %d times, want once by one member", k, n)
		}
	}
	if len(served) != 20 {
		t.Errorf("%d requests served, want 20", len(served))
	}
}

func TestRequestWithNoSubscriberFails(t *testing.T) {
	a := open(t, "")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := a.Request(ctx, "amphi.test.nobody", nil); err == nil {
		t.Fatal("a request nobody can answer succeeded")
	}
}
