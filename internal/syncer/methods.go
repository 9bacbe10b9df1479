package syncer

import (
	"context"
	"time"

	"github.com/outpost-edge/outpost/internal/hubapi"
)

// MethodHandler runs one direct method call the hub handed the device and
// returns the response to post back. It gets a context that ends when the
// hub no longer waits for the answer.
type MethodHandler func(ctx context.Context, call hubapi.MethodCall) hubapi.MethodResponse

// HandleMethods sets what answers the direct method calls that come with
// the hub's sync answers (the daemon sets it once the parts that answer
// exist). Until it is set, a call is answered "not online".
func (s *Syncer) HandleMethods(h MethodHandler) { s.methods.Store(&h) }

// dispatchMethods starts each call in its own goroutine, so that the next
// long poll starts at once, and posts its response to the hub.
func (s *Syncer) dispatchMethods(ctx context.Context, calls []hubapi.MethodCall) {
	var h MethodHandler
	if p := s.methods.Load(); p != nil {
		h = *p
	}
	for _, c := range calls {
		go func() {
			// The handler keeps its own timeouts; this is only a backstop.
			cctx, cancel := context.WithTimeout(ctx, time.Duration(c.ConnectTimeoutMs+c.ResponseTimeoutMs)*time.Millisecond+time.Second)
			defer cancel()
			var res hubapi.MethodResponse
			if h == nil {
				res = hubapi.MethodResponse{NotOnline: true, Reason: "the daemon does not answer methods yet (it is starting)"}
			} else {
				res = h(cctx, c)
			}
			if cctx.Err() != nil && !res.NotOnline && !res.TimedOut {
				s.log.Warn("direct method: the answer came after the call's timeout: dropped", "device", c.DeviceID, "module", c.ModuleID, "method", c.Method, "status", res.Status)
				return
			}
			actx, acancel := context.WithTimeout(ctx, 10*time.Second)
			defer acancel()
			if err := s.hub.AnswerMethod(actx, s.deviceID, c.ID, res); err != nil {
				s.log.Warn("direct method: the hub did not take the answer", "device", c.DeviceID, "module", c.ModuleID, "method", c.Method, "err", err)
			}
		}()
	}
}
