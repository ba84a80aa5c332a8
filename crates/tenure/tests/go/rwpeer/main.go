// rwpeer: one holder of Go's contrib/recipes RWMutex, the etcd peer of
// crates/tenure/tests/etcd_go_rwmutex.rs. Built offline from Debian's golang-etcd-server-dev
// (GO111MODULE=off, GOPATH=...:/usr/share/gocode).
//
//	rwpeer ENDPOINTS NAME read|write STATEKEY
//
// Prints "lease <id hex>", takes the lock (RLock or Lock; the recipe has no timeout), reads
// STATEKEY (a writer then sets it to "go-writer"), prints "held <what it read>", waits for SIGUSR1,
// sets STATEKEY to "free" (a writer), releases and prints "released". Errors: "error <text>",
// exit 1.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	recipe "go.etcd.io/etcd/contrib/recipes"
)

func fail(err error) {
	fmt.Println("error", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 5 {
		fail(fmt.Errorf("usage: rwpeer ENDPOINTS NAME read|write STATEKEY"))
	}
	endpoints, name, mode, state := strings.Split(os.Args[1], ","), os.Args[2], os.Args[3], os.Args[4]
	release := make(chan os.Signal, 1)
	signal.Notify(release, syscall.SIGUSR1)
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		fail(err)
	}
	defer cli.Close()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		fail(err)
	}
	fmt.Printf("lease %x\n", int64(s.Lease()))
	m := recipe.NewRWMutex(s, name)
	ctx := context.Background()
	if mode == "read" {
		err = m.RLock()
	} else {
		err = m.Lock()
	}
	if err != nil {
		fail(err)
	}
	seen, err := cli.Get(ctx, state)
	if err != nil {
		fail(err)
	}
	value := ""
	if len(seen.Kvs) > 0 {
		value = string(seen.Kvs[0].Value)
	}
	if mode == "write" {
		if _, err := cli.Put(ctx, state, "go-writer"); err != nil {
			fail(err)
		}
	}
	fmt.Println("held", value)
	<-release
	if mode == "write" {
		if _, err := cli.Put(ctx, state, "free"); err != nil {
			fail(err)
		}
	}
	if mode == "read" {
		err = m.RUnlock()
	} else {
		err = m.Unlock()
	}
	if err != nil {
		fail(err)
	}
	fmt.Println("released")
	s.Close()
}
