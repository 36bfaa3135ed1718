package gateway

import (
	"context"
	"errors"
)

// ErrDraining is the readiness error of a gateway that drains, shuts
// down or is closed ([Gateway.DrainCheck]).
var ErrDraining = errors.New("gateway: draining")

// Draining reports whether the gateway has begun to leave: Drain or
// Shutdown was called (it accepts no client and is moving its clients
// away), or it is closed.
func (g *Gateway) Draining() bool {
	return g.draining.Load() || g.isClosed()
}

// DrainCheck is a readiness check (admin.Check's Check): ErrDraining once
// the gateway is [Gateway.Draining], so that a load balancer or a
// Kubernetes Service stops sending it clients while it drains.
func (g *Gateway) DrainCheck(context.Context) error {
	if g.Draining() {
		return ErrDraining
	}
	return nil
}
