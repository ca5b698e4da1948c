package ingest

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"golang.org/x/time/rate"
)

// lagInterval is how often a running ingest lists the end offsets of the
// partitions it owns. The lag is also updated from every fetch, but a
// consumer that stopped fetching (a batch that cannot be made durable, a
// broker refusing its writes) fetches nothing: its lag has to grow anyway,
// for the alerts to see it.
const lagInterval = 5 * time.Second

// positions are, for each partition an instance owns, the offset
// committed and the partition's end: how far is durable, and how far there
// is to go. Lag counts from the commit, not from what was fetched or
// applied, since a batch applied but stuck before its commit is not
// visible anywhere yet. It has its own lock: in.mu is held while a batch is
// made durable, which is when the lag matters most.
type positions struct {
	mu    sync.Mutex
	parts map[string]map[int32]*position // by topic and partition
	m     *metrics
}

type position struct {
	committed int64 // next offset to process; -1 until the group commits one
	start     int64 // where the consumer starts without a commit: the log's start
	end       int64 // the partition's last stable offset, last seen: the end a read_committed consumer reaches
}

// own starts tracking assigned partitions, from their committed offsets
// where the group has some.
func (ps *positions) own(assigned map[string][]int32, committed kadm.OffsetResponses) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for t, parts := range assigned {
		if ps.parts[t] == nil {
			ps.parts[t] = map[int32]*position{}
		}
		for _, p := range parts {
			pos := &position{committed: -1}
			if c, ok := committed.Lookup(t, p); ok && c.Err == nil {
				pos.committed = c.At
			}
			ps.parts[t][p] = pos
			ps.report(t, p, pos)
		}
	}
}

// disown stops reporting revoked partitions: their next owner does, and a
// series kept here would stay frozen at its last value.
func (ps *positions) disown(revoked map[string][]int32) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for t, parts := range revoked {
		for _, p := range parts {
			delete(ps.parts[t], p)
			part := strconv.Itoa(int(p))
			ps.m.lag.DeleteLabelValues(t, part)
			ps.m.offset.DeleteLabelValues(t, part)
		}
	}
}

// commit records an offset committed for a partition, if still owned.
func (ps *positions) commit(topic string, partition int32, offset int64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if pos := ps.parts[topic][partition]; pos != nil {
		pos.committed = offset
		ps.report(topic, partition, pos)
	}
}

// observe records a partition's start and end offsets: a fetch's, or a
// listing's.
func (ps *positions) observe(topic string, partition int32, start, end int64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if pos := ps.parts[topic][partition]; pos != nil {
		pos.start, pos.end = start, max(pos.end, end)
		ps.report(topic, partition, pos)
	}
}

func (ps *positions) report(topic string, partition int32, pos *position) {
	part := strconv.Itoa(int(partition))
	from := pos.committed
	if from >= 0 {
		ps.m.offset.WithLabelValues(topic, part).Set(float64(from))
	} else {
		from = pos.start
	}
	ps.m.lag.WithLabelValues(topic, part).Set(float64(max(pos.end-from, 0)))
}

// topics returns the topics of the owned partitions.
func (ps *positions) topics() []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var ts []string
	for t, parts := range ps.parts {
		if len(parts) > 0 {
			ts = append(ts, t)
		}
	}
	return ts
}

// checkLag updates the lag of the owned partitions from their end offsets.
func (in *Ingester) checkLag(ctx context.Context) error {
	topics := in.positions.topics()
	if len(topics) == 0 {
		return nil
	}
	ends, err := in.admin.ListCommittedOffsets(ctx, topics...) // the last stable offsets: a read_committed consumer's end
	if err == nil {
		err = ends.Error()
	}
	var starts kadm.ListedOffsets
	if err == nil {
		starts, err = in.admin.ListStartOffsets(ctx, topics...)
	}
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return err
	}
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(o.Topic, o.Partition)
		in.positions.observe(o.Topic, o.Partition, s.Offset, o.Offset)
	})
	return nil
}

// every runs check every d until ctx ends. A check that fails is logged
// (msg, at most as often as warn allows) and tried again at the next tick.
func (in *Ingester) every(ctx context.Context, d time.Duration, check func(context.Context) error, warn *rate.Sometimes, msg string) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := check(ctx); err != nil && ctx.Err() == nil {
			warn.Do(func() { in.log.Warn(msg, "err", err) })
		}
	}
}
