/* COM1 16550A UART driver, polled transmit and receive (National
 * Semiconductor PC16550D datasheet, "Register Description"). */
#include "kernel_lib/io/serial.h"
#include "kernel_lib/cpu/ports.h"
#include "kernel_lib/util/format.h"

#define COM1              0x3F8

/* Register offsets from the base port. */
#define UART_RBR          0   /* receive buffer (read, DLAB=0)          */
#define UART_THR          0   /* transmit holding (write, DLAB=0)       */
#define UART_DLL          0   /* divisor latch low (DLAB=1)             */
#define UART_IER          1   /* interrupt enable (DLAB=0)              */
#define UART_DLM          1   /* divisor latch high (DLAB=1)            */
#define UART_FCR          2   /* FIFO control (write)                   */
#define UART_LCR          3   /* line control                           */
#define UART_MCR          4   /* modem control                          */
#define UART_LSR          5   /* line status                            */

#define LCR_8N1           0x03        /* 8 data bits, no parity, 1 stop */
#define LCR_DLAB          (1 << 7)    /* divisor latch access           */
#define FCR_ENABLE        (1 << 0)    /* FIFOs on                       */
#define FCR_CLEAR_RX      (1 << 1)
#define FCR_CLEAR_TX      (1 << 2)
#define FCR_TRIGGER_14    (3 << 6)    /* receive interrupt at 14 bytes  */
#define MCR_DTR           (1 << 0)
#define MCR_RTS           (1 << 1)
#define MCR_OUT1          (1 << 2)
#define MCR_OUT2          (1 << 3)    /* gates the IRQ line on PCs      */
#define MCR_LOOPBACK      (1 << 4)
#define LSR_DATA_READY    (1 << 0)
#define LSR_THR_EMPTY     (1 << 5)

#define UART_CLOCK_DIVISOR_115200 1   /* 1.8432 MHz / (16 * 115200)     */
#define LOOPBACK_TEST_BYTE        0xAE

static void uart_write(int reg, uint8_t value) { outb(COM1 + reg, value); }
static uint8_t uart_read(int reg) { return inb(COM1 + reg); }

int serial_init(void)
{
    uart_write(UART_IER, 0);
    uart_write(UART_LCR, LCR_DLAB);
    uart_write(UART_DLL, UART_CLOCK_DIVISOR_115200 & 0xFF);
    uart_write(UART_DLM, UART_CLOCK_DIVISOR_115200 >> 8);
    uart_write(UART_LCR, LCR_8N1);
    uart_write(UART_FCR, FCR_ENABLE | FCR_CLEAR_RX | FCR_CLEAR_TX | FCR_TRIGGER_14);

    uart_write(UART_MCR, MCR_RTS | MCR_OUT1 | MCR_OUT2 | MCR_LOOPBACK);
    uart_write(UART_THR, LOOPBACK_TEST_BYTE);
    if (uart_read(UART_RBR) != LOOPBACK_TEST_BYTE) {
        uart_write(UART_MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
        return -1;
    }
    uart_write(UART_MCR, MCR_DTR | MCR_RTS | MCR_OUT1 | MCR_OUT2);
    return 0;
}

void serial_putc(char c)
{
    while ((uart_read(UART_LSR) & LSR_THR_EMPTY) == 0)
        ;
    uart_write(UART_THR, (uint8_t)c);
}

void serial_write_n(const char *s, uint64_t length)
{
    for (uint64_t i = 0; i < length; i++)
        serial_putc(s[i]);
}

void serial_write(const char *s)
{
    while (*s)
        serial_putc(*s++);
}

void serial_put_uint(uint64_t value)
{
    char digits[FORMAT_UINT64_MAX];

    serial_write_n(digits, (uint64_t)format_uint(value, digits));
}

void serial_put_int(int64_t value)
{
    if (value < 0) {
        serial_putc('-');
        /* Negate in unsigned arithmetic: -INT64_MIN overflows int64. */
        serial_put_uint(0 - (uint64_t)value);
        return;
    }
    serial_put_uint((uint64_t)value);
}

void serial_put_hex(uint64_t value, int min_digits)
{
    char digits[FORMAT_HEX64_MAX];

    serial_write("0x");
    serial_write_n(digits, (uint64_t)format_hex(value, min_digits, digits));
}

int serial_getc_nonblocking(void)
{
    if ((uart_read(UART_LSR) & LSR_DATA_READY) == 0)
        return -1;
    return uart_read(UART_RBR);
}
