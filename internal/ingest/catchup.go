package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/quiver-ml/quiver/internal/replay"
	"github.com/quiver-ml/quiver/store/online"
)

// catchUp brings view versions that ingest did not compute until now up to
// date with the offline event log, before the group is joined: a version
// whose changelog this instance just created is replayed from the whole
// log, and a version with a replay marker (backfill replay ran) from the
// offsets the marker records. The marker is written first and removed last,
// so a crash part way replays again. From then on, the applied offsets in
// the records make every redelivered event a no-op.
func (in *Ingester) catchUp(ctx context.Context) error {
	if in.cfg.Offline == nil {
		return nil
	}
	for _, er := range in.entries {
		for _, views := range er.views {
			for _, v := range views {
				view := v.engine.View()
				covered, ok, err := replay.ReadMarker(ctx, in.cfg.Offline, view)
				if err != nil {
					return err
				}
				if !ok && !in.created[v.changelog] {
					continue // computed live all along
				}
				if !ok {
					if err := replay.WriteMarker(ctx, in.cfg.Offline, view, nil); err != nil {
						return err
					}
				}
				if err := in.catchUpView(ctx, v, covered); err != nil {
					return fmt.Errorf("catch up %s: %w", view.Ref(), err)
				}
				if err := replay.RemoveMarker(ctx, in.cfg.Offline, view); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (in *Ingester) catchUpView(ctx context.Context, v *viewRoute, after map[int32]int64) error {
	began := time.Now()
	current, err := replay.ReadChangelog(ctx, in.cfg.Brokers, v.changelog)
	if err != nil {
		return err
	}
	res, err := replay.Run(ctx, replay.Config{
		Definitions: in.cfg.Definitions, View: v.engine.View(), Offline: in.cfg.Offline, After: after,
		Load: func(key string) (*replay.Entity, error) {
			rec, ok := current[key]
			if !ok {
				return nil, nil
			}
			st, applied, err := online.DecodeState(v.engine, rec)
			if err != nil {
				return nil, err
			}
			return &replay.Entity{State: st, Applied: applied}, nil
		},
	})
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(in.cfg.Brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := replay.Publish(ctx, cl, in.cfg.TopicPrefix, in.cfg.Definitions, v.engine.View(), res.Entities, in.cfg.Redis); err != nil {
		return err
	}
	in.log.Info("view caught up from the event log", "view", v.engine.View().Ref(), "after", fmt.Sprint(after),
		"events", res.Events, "applied", res.Applied, "entities", len(res.Entities), "took", time.Since(began).Round(time.Millisecond))
	return nil
}
