// Package liveports keeps the listeners of the example programs in step
// with the ports of an aioconfig.Broker: after each Apply that changed
// the ports (aioconfig.Broker.Notify), it opens the ports that are new,
// shuts down the ones removed (through the connection layer: DISCONNECT
// 0x8B to their MQTT 5 clients) and replaces those whose address or TLS
// mode (plain or TLS) changed. A port's certificate, client certificate
// verification, chain and policy change without touching its listener:
// aioconfig.Broker.TLS and the Broker's dispatch read the new generation.
//
//	ports := liveports.New(b, liveports.Funcs{Start: start, Stop: stop}, log)
//	err := ports.Sync(ctx) // the ports of the configuration, at start
//	ports.Follow()         // then every change
//	defer ports.Close()
package liveports
