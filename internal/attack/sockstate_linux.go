package attack

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpEstablished is Linux's TCP_ESTABLISHED in tcp_info.tcpi_state.
const tcpEstablished = 1

// peerEnded reports whether the connection has left the established state
// (the server sent FIN or RST), without reading from it, and copies the
// start of what the server sent into peek without consuming it.
func peerEnded(conn net.Conn, peek []byte) (ended bool, n int) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false, 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true, 0
	}
	err = rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		ended = err != nil || info.State != tcpEstablished
		if len(peek) > 0 {
			if m, _, err := unix.Recvfrom(int(fd), peek, unix.MSG_PEEK|unix.MSG_DONTWAIT); err == nil {
				n = m
			}
		}
	})
	if err != nil { // closed under us
		return true, 0
	}
	return ended, n
}
