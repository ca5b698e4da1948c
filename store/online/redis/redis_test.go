package redis_test

import (
	"context"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/quiver-ml/quiver/internal/ingesttest"
	"github.com/quiver-ml/quiver/store/online"
	"github.com/quiver-ml/quiver/store/online/redis"
	"github.com/quiver-ml/quiver/store/online/storetest"
)

func TestStore(t *testing.T) {
	addr := ingesttest.StartRedis(t)
	storetest.Run(t, func(t *testing.T, records []online.Record) online.Store {
		client := goredis.NewClient(&goredis.Options{Addr: addr})
		ctx := context.Background()
		if err := client.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		for _, r := range records {
			// As ingest writes them.
			if err := client.Set(ctx, online.RedisKey("test", r.Table, r.Key), r.Value, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		return redis.New(client, "test")
	})
}
