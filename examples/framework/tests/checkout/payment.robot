*** Settings ***
Documentation    Checkout with card and invoice, declined payments, required address.
Resource    resources/common.resource
Resource    resources/checkout.resource
Suite Setup    Open Shop Session
Suite Teardown    Close Shop Session


*** Test Cases ***
SHOP-120 Checkout With Valid Card
    [Documentation]    Paying with a valid card creates a paid order and empties the cart.
    [Tags]    SHOP-120    checkout    smoke
    Login As    alice
    Empty Cart
    Add Product To Cart    EL-2001
    ${order_id}=    Checkout With Card    ${VALID_CARD}
    Should Start With    ${order_id}    ORD-
    Order Confirmation Should Show Total    29.99
    Cart Should Be Empty

SHOP-121 Declined Card Keeps Items In Cart
    [Documentation]    A declined payment creates no order and keeps the cart.
    [Tags]    SHOP-121    checkout    regression
    Login As    alice
    Empty Cart
    Add Product To Cart    TY-4001
    Checkout Should Fail With Message    Payment declined    expected_status=402
    ...    card_number=${DECLINED_CARD}
    Cart Should Contain Product    TY-4001    1

SHOP-122 Checkout Requires Shipping Address
    [Documentation]    Checkout without a shipping address is refused.
    [Tags]    SHOP-122    checkout    regression
    Login As    bob
    Empty Cart
    Add Product To Cart    HM-3001
    Checkout Should Fail With Message    Shipping address is required    shipping_address=${EMPTY}

SHOP-123 Checkout With Invoice
    [Documentation]    Registered customers can pay small orders by invoice.
    [Tags]    SHOP-123    checkout    smoke
    Login As    bob
    Empty Cart
    Add Product To Cart    BK-1002
    ${order_id}=    Checkout With Payment Method    invoice
    Order Confirmation Should Show Total    41.90
