package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/outpost-edge/outpost/internal/broker"
	"github.com/outpost-edge/outpost/internal/hubapi"
	"github.com/outpost-edge/outpost/internal/hubclient"
	"github.com/outpost-edge/outpost/internal/mgmtclient"
	"github.com/outpost-edge/outpost/internal/msgqueue"
	"github.com/outpost-edge/outpost/internal/syncer"
)

// Upload batch bounds: well within the hub's hubapi.MaxMessageUpload once
// bodies are base64 in JSON.
const (
	uploadMaxMessages = 500
	uploadMaxBytes    = 1 << 20
)

// uploader sends the messages routed to $upstream to the hub, in order, in
// batches, and acknowledges in the queue what the hub says it has durably.
// It tries whenever something is queued, the link to the hub comes back, or
// its back-off passes.
type uploader struct {
	deviceID string
	hub      *hubclient.Client
	q        *msgqueue.Log
	sy       *syncer.Syncer
	log      *slog.Logger
}

func (u *uploader) Run(ctx context.Context) error {
	backoff := time.Second
	for ctx.Err() == nil {
		changed := u.q.Changed()
		link := u.sy.StatusChanged()
		sent, err := u.drain(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			u.log.Debug("upload messages to the hub: will try again", "err", err, "in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
			case <-t.C:
			case <-link:
			}
			t.Stop()
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		if sent {
			continue
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-link:
		}
	}
	return nil
}

// drain uploads everything queued; it reports whether it sent anything.
func (u *uploader) drain(ctx context.Context) (bool, error) {
	sent := false
	for {
		entries := u.q.Pending(broker.UpstreamDest, 0, uploadMaxMessages)
		if len(entries) == 0 {
			return sent, nil
		}
		up := hubapi.MessageUpload{Epoch: u.q.Epoch()}
		size := 0
		for _, e := range entries {
			var m hubapi.Message
			if err := json.Unmarshal(e.Data, &m); err != nil {
				u.log.Error("a queued message does not decode: skipped", "seq", e.Seq, "err", err)
				continue
			}
			if size > 0 && size+len(e.Data)*4/3 > uploadMaxBytes {
				break
			}
			size += len(e.Data) * 4 / 3
			m.Seq = e.Seq
			up.Messages = append(up.Messages, m)
		}
		last := entries[len(entries)-1].Seq
		if len(up.Messages) > 0 {
			last = up.Messages[len(up.Messages)-1].Seq
			res, err := u.hub.UploadMessages(ctx, u.deviceID, up)
			if err != nil {
				return sent, err
			}
			last = min(last, res.Acked)
			for _, r := range res.Rejected {
				u.log.Warn("the hub rejected a queued message: dropped", "seq", r.Seq, "device", r.DeviceID, "error", r.Error)
			}
		}
		u.q.Ack(broker.UpstreamDest, last)
		sent = true
	}
}

// messageQueue is the message queue for the management API's /status.
func (d *Daemon) messageQueue() mgmtclient.MessageQueue {
	conv := func(s msgqueue.Stats) mgmtclient.QueueStats {
		return mgmtclient.QueueStats{Count: s.Count, Bytes: s.Bytes, Oldest: s.Oldest, Expired: s.Expired, Refused: s.Refused}
	}
	var st broker.MessageStatus
	if b, ok := d.broker.(interface{ Messages() broker.MessageStatus }); ok {
		st = b.Messages()
	} else {
		st = broker.MessageStatus{Upstream: d.msgs.Stats(broker.UpstreamDest), Inputs: d.msgs.Stats("input/")}
	}
	return mgmtclient.MessageQueue{Upstream: conv(st.Upstream), Inputs: conv(st.Inputs), RoutesError: st.RoutesError}
}
