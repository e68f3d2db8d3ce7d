-- The seeds' demo: sales (ventas) and inventory, watched.
-- Applied by `npm run dev` after the migrations; safe to re-run.

CREATE TABLE IF NOT EXISTS public.inventory (
  sku        text PRIMARY KEY,
  name       text NOT NULL,
  stock      integer NOT NULL CHECK (stock >= 0),
  price      numeric(10, 2) NOT NULL,
  -- Internal column: never published.
  supplier_cost numeric(10, 2),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.ventas (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sku        text NOT NULL REFERENCES public.inventory (sku),
  quantity   integer NOT NULL CHECK (quantity > 0),
  total      numeric(12, 2) NOT NULL,
  -- Personal data: never published.
  customer_email text,
  created_at timestamptz NOT NULL DEFAULT now()
);

SELECT notifiws.watch('public.ventas', 'sales', ARRAY['id', 'sku', 'quantity', 'total', 'created_at']);
SELECT notifiws.watch('public.inventory', 'inventory', ARRAY['sku', 'name', 'stock', 'price', 'updated_at'], include_old => true);
-- A derived channel: items below 5 in stock. An update that restocks one sends `leave`,
-- so the dashboard's low-stock list (a live table) drops it.
SELECT notifiws.watch('public.inventory', 'inventory.alerts', ARRAY['sku', 'name', 'stock'],
  condition => 'NEW.stock < 5');

INSERT INTO public.inventory (sku, name, stock, price, supplier_cost) VALUES
  ('KB-01', 'Mechanical keyboard', 14, 89.00, 41.00),
  ('MS-02', 'Wireless mouse', 22, 29.50, 11.20),
  ('MN-03', '27" monitor', 9, 249.00, 160.00),
  ('HD-04', 'USB-C hub', 17, 39.90, 14.00),
  ('CB-05', 'HDMI cable', 30, 9.90, 2.10)
ON CONFLICT (sku) DO NOTHING;
